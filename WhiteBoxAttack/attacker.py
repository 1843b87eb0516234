"""Step 6: the white-box attack, as a library (used by the Crafter and evaluate.py) and a CLI.

The attacker knows Enc and has a GAN prior G trained on public faces. Given a released feature
F it solves   z_star = argmin_z  L_inv(F, z),  L_inv = ||Enc(G(z)) - F||_2   per image (the
white-box attack's loss in the paper, a norm, not its square), by momentum descent (lr 5e-3,
momentum 0.9), 600 iterations from a random start, or 80 iterations from the amortizer's guess
Amor(F); the reconstruction is G(z_star). Crafter's inner problem uses the same L_inv (it
simulates this attacker). The squared loss ||.||^2 / d that the paper writes for Crafter's inner
problem has the same minimiser and, at it, the same dz_star/dF (its H and mixed derivative are
the norm's times 2 ||r|| / d). Measured on demo (2026-11-30, README): as the attack it is no
better (top-1 amortized / random 0.78 / 0.81 at its best lr 1.0, the norm 0.75 / 0.81 at 5e-3;
100 images), and as Crafter's inner loss it protects less at a higher utility cost (32 images,
beta 0.01, 40 steps: top-1 0.78 -> 0.34, eps-PII 1.07 -> 0.58, L_u 2.70; the norm 0.81 -> 0.28,
1.09 -> 0.49, L_u 2.13), so the norm, whose step size does not depend on the feature size or
the residual, is kept. An optional prior term adds -prior_weight * D(G(z)) with the GAN's own
critic (the authors' code).

The CLI inverts the features of eval_test images (raw by default, or any saved feature file),
saves the reconstructions and a comparison grid, and scores them with the oracle.

    python WhiteBoxAttack/attacker.py --preset demo --mode both
"""
from pathlib import Path

import torch
from tqdm import tqdm

# ---- hyperparameters (paper defaults; override with --name value or --preset NAME) ----
HP = dict(
    mode='both',         # random | amortized | both
    steps=600,           # random-start iterations (paper: 600)
    amor_steps=80,       # amortized iterations (paper: 80)
    lr=5e-3,             # momentum descent on z (paper: lr 5e-3, momentum 0.9)
    momentum=0.9,
    restarts=3,          # random starts per image; every one is scored (paper: 3)
    prior_weight=0.0,    # weight of -D(G(z)) (the authors' code adds it; 0 = off)
    batch_size=128,
    n_per_id=0,          # eval_test images per identity (0 = all)
    features='',         # a saved feature file to attack instead of raw Enc(eval_test)
    out='',              # output folder (default results/<run>/attack_<name>)
)
# what needs more than "finite and >= 0" (common/config.py): counts, learning rates, fractions
RANGES = dict(steps='>=1', lr='>0', momentum='[0,1)', restarts='>=1', batch_size='>=1')
PRESETS = {
    'tiny': dict(steps=10, amor_steps=5, restarts=1, n_per_id=2),
    'demo': dict(steps=200, amor_steps=40, restarts=1, n_per_id=1),
    'celeba-cpu': dict(steps=300, amor_steps=60, restarts=1, n_per_id=2),
}
# -----------------------------------------------------------------------------------------


def inversion_loss(Enc, G, z, F):
    """L_inv per image: ||Enc(G(z)) - F||_2 (the norm; the attacker's and Crafter's inner loss)."""
    return (Enc(G(z)) - F).flatten(1).norm(dim=1)


def feature_mse(Enc, G, z, F):
    """Mean squared feature error per image (what the logs and the amortizer check report)."""
    return (Enc(G(z)) - F).pow(2).flatten(1).mean(1)


def invert(Enc, G, F, z0, steps, lr=5e-3, momentum=0.9, D=None, prior_weight=0.0):
    """Momentum descent on z from z0 for `steps` iterations; returns (z_star, final MSE).

    Each image's loss is summed over the batch, so images do not interact and the result does
    not depend on the batch size.
    """
    z = z0.detach().clone().requires_grad_(True)
    opt = torch.optim.SGD([z], lr=lr, momentum=momentum)
    for _ in range(steps):
        total = inversion_loss(Enc, G, z, F).sum()
        if D is not None and prior_weight > 0:
            total = total - prior_weight * D(G(z)).sum()
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
    with torch.no_grad():
        final = feature_mse(Enc, G, z, F)
    return z.detach(), final


def random_start(n, latent_dim, generator, device):
    return torch.randn(n, latent_dim, generator=generator).to(device)


def whitebox(Enc, G, F, cfg, Amor=None, D=None, generator=None, amortized=False):
    """The attack on a batch of features; returns reconstructions (restarts x N x 3 x S x S).

    amortized: one start at Amor(F), cfg.amor_steps iterations; otherwise cfg.restarts random
    starts of cfg.steps iterations each.
    """
    outs = []
    starts = 1 if amortized else cfg.restarts
    for _ in range(starts):
        if amortized:
            with torch.no_grad():
                z0 = Amor(F)
            steps = cfg.amor_steps
        else:
            z0 = random_start(len(F), G.latent_dim, generator, F.device)
            steps = cfg.steps
        z, _ = invert(Enc, G, F, z0, steps, cfg.lr, cfg.momentum, D, cfg.prior_weight)
        with torch.no_grad():
            outs.append(G(z))
    return torch.stack(outs)


def main(argv=None):
    from common import ckpt, config, io, plots, runtime
    from dataset import loader
    import metrics
    from Image2ID.evalTrain import load_oracle

    cfg = config.parse(HP, PRESETS, argv, ranges=RANGES, description=__doc__)
    device, clock = runtime.start(cfg, 'attacker')
    meta = loader.load_meta(cfg.data_dir)
    Enc, G, D, Amor = ckpt.load_attacker(cfg, meta, device, need_amor=cfg.mode != 'random')
    test = loader.load(cfg.data_dir, 'eval_test', device, meta)
    keep = loader.per_identity(test, cfg.n_per_id, cfg.seed)
    test = test.subset(keep)
    if cfg.features:
        feats = ckpt.aligned_features(cfg.features, test).to(device)
        name = Path(cfg.features).parent.name or 'features'
    else:
        with torch.no_grad():
            feats = torch.cat([Enc(test.x(b.to(device))) for b in loader.batches(len(test), 256)])
        name = 'raw'
    out = Path(cfg.out) if cfg.out else io.repo_path(cfg.results_dir) / runtime.run_tag(cfg) / f'attack_{name}'
    oracle = load_oracle(cfg, meta, device)
    gen = torch.Generator().manual_seed(cfg.seed)
    modes = ['random', 'amortized'] if cfg.mode == 'both' else [cfg.mode]
    report = {}
    for mode in modes:
        recons = []
        for b in tqdm(list(loader.batches(len(test), cfg.batch_size)), desc=f'white-box {mode}'):
            recons.append(whitebox(Enc, G, feats[b.to(device)], cfg, Amor, D, gen,
                                   amortized=mode == 'amortized').cpu())
        recon = torch.cat(recons, dim=1)                        # restarts x N x 3 x S x S
        r = recon.shape[0]
        scores = metrics.reconstruction_scores(oracle, recon.flatten(0, 1), test.x().cpu().repeat(r, 1, 1, 1),
                                               test.labels.cpu().repeat(r))
        report[mode] = scores
        print(f'white-box {mode}: ' + ', '.join(f'{k}={v:.4g}' for k, v in scores.items()))
        io.save_torch({'recon': (recon * 255).round().to(torch.uint8), 'names': test.names}, out / f'recon_{mode}.pt')
        plots.save_rows([test.x()[:16].cpu(), recon[0, :16]], out / f'grid_{mode}.png')
    report['chance'] = 1 / test.n_ids
    cfg.save(out / 'config.json')
    clock.finish('attacker', out / 'report.json', **{f'{m}_{k}': v for m in modes
                                                     for k, v in report[m].items()},
                 chance=report['chance'])
    return report


if __name__ == '__main__':
    main()
