"""Step 11: the adaptive white-box attack (paper, Appendix E, A1): the attacker adapts G.

The attacker queries the protection with Q of its own public faces (`n_per_id` per identity, one
by default; the same Q for every protection) and holds out a part of them (`holdout`) to
validate on; it never sees the oracle or a private image. On the rest it inverts the protected
features as its amortized attack does (start Amor(F), `amor_steps` momentum steps) and updates G
so that G(z_star) matches the faces it sent: minimise ||G(z_star) - x||^2, plus `keep_weight`
times ||G(z) - G0(z)||^2 on random z (G0: the prior before adaptation), which keeps G a face
generator away from the queries. After every epoch it runs the attack as evaluated (re-inverting
with the current G) on the held-out queries and keeps the G with the lowest held-out image
error, the unadapted prior included (epoch 0), so adapting can only help on the attacker's own
data; it stops after `patience` epochs without improvement.

Why this schedule (demo models, Q = 128: 96 to adapt on, 32 held out; held-out loss of the
unadapted prior 0.01070 on raw features, 0.01621 on noise_s3): the paper's RMSprop lr 1e-3
collapses G at once (held-out 0.054 after one epoch; earlier, adaptive white-box on raw
features 0.74 -> 0.04), Adam 1e-3 makes it worse every epoch (0.0114), and the earlier
RMSprop 1e-5 left G unchanged. Adam 1e-4 with the keep term improves steadily (raw 0.01052 at
epoch 7, noise 0.01580 at epoch 10); without the keep term it overfits after one epoch
(0.01063, then up). The gain is small, and on demo it did not raise the oracle's top-1 (100
eval_test images, amortized vs adapted: raw 0.75 vs 0.73, noise_s3 0.56 vs 0.51, within one
binomial standard error): a lower pixel error is not a better identity.

Works for any protection (none, crafter_beta<b>, zcrafter_beta<b>, noise_s<s>,
advlearn_lambda<l>): the released public features come from the protection's feature file
(its run with --split public), and a protection that changes the encoder (AdvLearn) is attacked
through its own Enc and amortizer. Saves params/G_adaptive_<protection>.pt (a generator
checkpoint like gan.pt) whose metrics hold the held-out losses before and after.

    python WhiteBoxAttack/adaptiveUpdateG.py --preset demo --protection crafter_beta1
"""
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from common import ckpt, config, dist, plots, runtime  # noqa: E402
from Crafter_protection import crafting  # noqa: E402
from dataset import loader  # noqa: E402
from WhiteBoxAttack.attacker import HP as ATTACK_HP, invert  # noqa: E402

# ---- hyperparameters (paper defaults; override with --name value or --preset NAME) ----
HP = dict(
    protection='none',   # none | crafter_beta<b> | zcrafter_beta<b> | noise_s<s> | advlearn_lambda<l>
    n_images=256,        # Q: public queries (the same for every protection)
    n_per_id=1,          # public images per identity among them (> 1 when Q exceeds the ids)
    holdout=0.25,        # part of the queries kept for validation (early stopping)
    epochs=10,           # at most this many passes over the other queries (not stated in the paper)
    patience=3,          # stop after this many epochs without a better held-out loss
    batch_size=64,
    optimizer='adam',    # adam | rmsprop (paper: RMSprop lr 1e-3, which collapses G here)
    lr=1e-4,
    keep_weight=1.0,     # weight of ||G(z) - G0(z)||^2 on random z (0 = off)
    keep_batch=64,       # random z per step for that term
    prior_weight=0.0,    # weight of -D(G(z)) on random z with the GAN's own critic (0 = off)
    amor_steps=ATTACK_HP['amor_steps'],   # inversion steps per query, as the amortized attack
    inv_lr=ATTACK_HP['lr'],
    momentum=ATTACK_HP['momentum'],
)
PRESETS = {
    # tiny: 12 queries to adapt on and a barely trained G; more, larger steps so the tests see
    #   adaptation within seconds
    'tiny': dict(n_images=16, epochs=4, patience=4, batch_size=4, lr=3e-3, keep_weight=3.0,
                 amor_steps=2),
    'demo': dict(n_images=128, amor_steps=40),
    'celeba-cpu': dict(n_images=256, amor_steps=60),
}
# -----------------------------------------------------------------------------------------


def adaptive_name(protection):
    return f'G_adaptive_{protection}.pt'


def attacker_models(cfg, meta, device, protection):
    """Enc, G, D, Amor as the white-box attacker of `protection` has them."""
    return ckpt.load_attacker(cfg, meta, device, enc=ckpt.protection_enc(protection),
                              amor=ckpt.protection_amor(protection))


def query_split(n, holdout, seed):
    """(adapt, held-out) indices of the n queries, a seeded split."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    n_held = max(1, int(round(holdout * n))) if n > 1 else 0
    return perm[n_held:].sort().values, perm[:n_held].sort().values


def save_adapted(cfg, meta, kind, models, res, name, loss_label, title):
    """Write an adapted model (rank 0 only under torchrun) with its held-out and training curves;
    shared by the adaptive white-box and black-box attacks. Returns the checkpoint path."""
    out_file = ckpt.path(cfg, name)
    if dist.is_main():
        ckpt.save(out_file, kind=kind, models=models, cfg=cfg, meta=meta, metrics=res)
        h, t = res['heldout_history'], res['train_history']
        plots.save_curves({f'held-out {loss_label}': (list(range(len(h))), h),
                           f'adapt {loss_label}': (list(range(1, len(t) + 1)), t)},
                          out_file.with_suffix('.png'), f'{title} ({cfg.protection})', xlabel='epoch')
    dist.barrier()
    return out_file


def reconstruct(Enc, G, Amor, F, cfg):
    """The amortized attack with generator G: G(z_star), z_star from Amor(F) (no grads into G)."""
    req = [p.requires_grad for p in G.parameters()]
    for p in G.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        z0 = Amor(F)
    z, _ = invert(Enc, G, F, z0, cfg.amor_steps, cfg.inv_lr, cfg.momentum)
    for p, r in zip(G.parameters(), req):
        p.requires_grad_(r)
    return z


def heldout_loss(Enc, G, Amor, F, images, cfg):
    """Mean ||G(z_star(F)) - x||^2 per pixel over the queries: the attack as evaluated."""
    total = 0.0
    for b in loader.batches(len(F), cfg.batch_size):
        b = b.to(F.device)
        z = reconstruct(Enc, G, Amor, F[b], cfg)
        with torch.no_grad():
            total += (G(z) - images[b].float().div(255)).pow(2).flatten(1).mean(1).sum().item()
    return total / max(len(F), 1)


def adapt(Enc, G, D, Amor, F, images, cfg, gen):
    """Adapt a copy of G to (F, images); returns (best G, metrics). Epoch 0 = the prior."""
    device = F.device
    tr, va = query_split(len(F), cfg.holdout, cfg.seed)
    tr, va = tr.to(device), va.to(device)
    G0 = copy.deepcopy(G).eval()
    G = copy.deepcopy(G).eval()    # batch-norm statistics stay those of the prior
    for p in G.parameters():
        p.requires_grad_(True)
    params = list(G.parameters())
    if cfg.optimizer == 'adam':
        opt = torch.optim.Adam(params, lr=cfg.lr)
    elif cfg.optimizer == 'rmsprop':
        opt = torch.optim.RMSprop(params, lr=cfg.lr)
    else:
        raise config.ConfigError(f"--optimizer {cfg.optimizer!r}: expected 'adam' or 'rmsprop'")
    val = (lambda g: heldout_loss(Enc, g, Amor, F[va], images[va], cfg)) if len(va) else (lambda g: float('nan'))
    best = val(G)
    hist = {'train': [], 'heldout': [best]}
    unadapted, best_epoch, best_state, waited = best, 0, copy.deepcopy(G.state_dict()), 0
    print(f'held-out query loss before adapting: {best:.5f} ({len(va)} held out, {len(tr)} to adapt on)')
    bs = min(cfg.batch_size, len(tr))
    for epoch in range(1, cfg.epochs + 1):
        total, n = 0.0, 0
        bar = tqdm(loader.batches(len(tr), bs, True, gen), total=-(-len(tr) // bs),
                   desc=f'adapt G epoch {epoch}/{cfg.epochs}')
        for b in bar:
            b = tr[b.to(device)]
            z = reconstruct(Enc, G, Amor, F[b], cfg)
            loss = (G(z) - images[b].float().div(255)).pow(2).mean()
            total, n = total + loss.item(), n + 1
            if cfg.keep_weight > 0 or cfg.prior_weight > 0:
                zr = torch.randn(cfg.keep_batch, G.latent_dim, generator=gen).to(device)
                out = G(zr)
                if cfg.keep_weight > 0:
                    with torch.no_grad():
                        ref = G0(zr)
                    loss = loss + cfg.keep_weight * (out - ref).pow(2).mean()
                if cfg.prior_weight > 0:
                    loss = loss - cfg.prior_weight * D(out).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.set_postfix(mse=f'{total / n:.4f}')
        hist['train'].append(total / max(n, 1))
        v = val(G)
        hist['heldout'].append(v)
        better = v < best
        print(f'epoch {epoch}: query mse {hist["train"][-1]:.5f}, held-out {v:.5f}'
              + (' (best)' if better else ''))
        if better:
            best, best_epoch, best_state, waited = v, epoch, copy.deepcopy(G.state_dict()), 0
        else:
            waited += 1
            if waited >= cfg.patience:
                print(f'no better held-out loss for {cfg.patience} epochs: stopping')
                break
    G.load_state_dict(best_state)
    for p in G.parameters():
        p.requires_grad_(False)
    return G, {'heldout_loss_unadapted': unadapted, 'heldout_loss_adapted': best,
               'best_epoch': best_epoch, 'epochs_run': len(hist['train']),
               'heldout_history': hist['heldout'], 'train_history': hist['train'],
               'queries': len(F), 'adapt_queries': len(tr), 'heldout_queries': len(va)}


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, description=__doc__)
    if not 0 < cfg.holdout < 1:
        raise config.ConfigError(f'--holdout {cfg.holdout}: expected a fraction between 0 and 1')
    device, clock = runtime.start(cfg, 'adaptiveUpdateG')
    meta = loader.load_meta(cfg.data_dir)
    Enc, G, D, Amor = attacker_models(cfg, meta, device, cfg.protection)
    pub = loader.load(cfg.data_dir, 'public', device, meta)
    pub = crafting.public_queries(cfg, cfg.protection, pub, cfg.n_images, cfg.n_per_id)
    feats = crafting.protected_features(cfg, cfg.protection, pub, Enc, device)
    print(f'adapting G to {cfg.protection} with {len(pub)} protected public queries')
    gen = torch.Generator().manual_seed(cfg.seed)
    G_a, res = adapt(Enc, G, D, Amor, feats, pub.images.to(device), cfg, gen)
    res['protection'] = cfg.protection
    print(f"held-out query loss: unadapted {res['heldout_loss_unadapted']:.5f} -> adapted "
          f"{res['heldout_loss_adapted']:.5f} (epoch {res['best_epoch']} of {res['epochs_run']})")
    out_file = save_adapted(cfg, meta, 'gan', {'G': G_a, 'D': D}, res, adaptive_name(cfg.protection),
                            '||G(z*) - x||^2', 'adaptive G')
    clock.finish('adaptiveUpdateG', queries=len(pub), saved=str(out_file),
                 **{k: res[k] for k in ('heldout_loss_unadapted', 'heldout_loss_adapted', 'best_epoch')})
    return res


if __name__ == '__main__':
    main()
