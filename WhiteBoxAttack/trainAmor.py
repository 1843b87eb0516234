"""Step 5 (and 9): train the amortizer Amor: feature -> latent start point for the white-box inversion.

Trained on random z and their features Enc(G(z)). Two losses:
  latent  (paper Eq. 37):      ||Amor(Enc(G(z))) - z||^2
  feature (the authors' code): ||Enc(G(Amor(Enc(G(z))))) - Enc(G(z))||^2 / d
At the end it measures what matters, the feature MSE on real public features after
`eval_steps` momentum-descent steps started at Amor(F) (and, for reference, at random z).
Measured over 3 seeds on both datasets, the latent loss ends 1-4 % lower after the attack's
steps (while the feature loss starts lower), so it is the default; the CPU presets keep the
feature loss because every published CPU figure was made with it (README, "Amortizer loss").
Saves params/amor.pt.

    python WhiteBoxAttack/trainAmor.py --preset demo
"""

import torch
from tqdm import tqdm

from common import ckpt, config, dist, plots, runtime
from models import Amortizer
from dataset import loader
from WhiteBoxAttack.attacker import feature_mse, invert

# ---- hyperparameters (paper defaults; override with --name value or --preset NAME) ----
HP = dict(
    loss='latent',       # latent (paper Eq. 37) | feature (authors' code)
    width=64,            # base width (paper: 64 -> 128, 512, 1024 channels)
    steps=5000,          # batches of random z (not stated in the paper)
    batch_size=64,
    lr=0.01,             # Adam (paper: 0.01)
    eval_images=256,     # public images for the final inversion-loss check
    eval_steps=80,       # inversion steps for that check (the amortized attack's budget)
    ckpt_every=500,
    resume=False,
    gan='gan.pt',        # the prior to amortize (gan_a2.pt: the A2 attacker's own prior)
    enc='enc.pt',        # the target net whose features it inverts (a protection's own, e.g.
                         # advlearn_lambda<l>.pt for AdvLearn)
    name='amor.pt',      # output checkpoint; curves, config and report files take its stem
)
# what needs more than "finite and >= 0" (common/config.py): counts, learning rates, fractions
RANGES = dict(width='>=1', steps='>=1', batch_size='>=1', lr='>0', eval_images='>=1',
              eval_steps='>=1', ckpt_every='>=1')
PRESETS = {
    'tiny': dict(width=8, steps=4, batch_size=16, eval_images=16, eval_steps=3, ckpt_every=2),
    # loss='feature': the README's demo and celeba-cpu figures were made with it
    'demo': dict(loss='feature', width=16, steps=300, eval_steps=40, ckpt_every=100),
    'celeba-cpu': dict(loss='feature', width=32, steps=800, eval_steps=60, ckpt_every=200),
}
# -----------------------------------------------------------------------------------------


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, ranges=RANGES, description=__doc__)
    if cfg.loss not in ('feature', 'latent'):
        raise config.ConfigError(f"--loss {cfg.loss!r}: expected 'feature' or 'latent'")
    device, clock = runtime.start(cfg, 'trainAmor')
    meta = loader.load_meta(cfg.data_dir)
    target = ckpt.load_target(cfg, meta, device, cfg.enc)
    Enc = target.Enc
    G, _ = ckpt.load_gan(cfg, meta, device, cfg.gan)
    Amor = Amortizer(G.latent_dim, target.feat_shape, cfg.width).to(device)
    opt = torch.optim.Adam(Amor.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    gen = torch.Generator().manual_seed(cfg.seed)      # saved and restored with --resume
    start, hist = ckpt.resume(cfg, cfg.name, 'amor', meta, {'Amor': Amor},
                              {'opt': opt, 'sched': sched}, generators={'data': gen})
    hist = hist or {'loss': []}
    out_file = ckpt.path(cfg, cfg.name)
    stem = out_file.stem

    Amor.train()
    model = dist.wrap(Amor, device)     # DDP under torchrun
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=f'Amor ({cfg.loss} loss)',
               disable=not dist.is_main())
    for step in bar:
        z = torch.randn(cfg.batch_size, G.latent_dim, generator=gen).to(device)
        z = dist.local(z)               # this rank's share of the global batch (all of it alone)
        with torch.no_grad():
            f = Enc(G(z))
        z_hat = model(f)
        if cfg.loss == 'latent':
            loss = (z_hat - z).pow(2).mean()
        else:
            loss = feature_mse(Enc, G, z_hat, f).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        hist['loss'].append(dist.mean(loss.item()))
        if step % 10 == 0:
            bar.set_postfix(loss=f'{loss.item():.4g}')
        if (step + 1) % cfg.ckpt_every == 0 and step + 1 < cfg.steps:
            if dist.is_main():          # under torchrun rank 0 writes, the others wait
                ckpt.save(out_file, kind='amor', models={'Amor': Amor}, cfg=cfg, meta=meta,
                          done=False, train=ckpt.train_state({'opt': opt, 'sched': sched}, step + 1,
                                                             cfg.steps, hist, unit='step',
                                                             generators={'data': gen}))
            dist.barrier()
    dist.sync(Amor)                     # rank 0's buffers on every rank
    Amor.eval()

    # The check that decides between the two losses: inversion loss on real public features.
    pub = loader.load(cfg.data_dir, 'public', device, meta)
    idx = torch.randperm(len(pub), generator=gen)[:cfg.eval_images].to(device)
    with torch.no_grad():
        F = Enc(pub.x(idx))
        z_amor = Amor(F)
    z0_rand = torch.randn(len(F), G.latent_dim, generator=gen).to(device)
    res = {}
    for name, z0 in (('amortized', z_amor), ('random', z0_rand)):
        with torch.no_grad():
            res[f'{name}_start_loss'] = feature_mse(Enc, G, z0, F).mean().item()
        _, final = invert(Enc, G, F, z0, cfg.eval_steps)
        res[f'{name}_loss_after_{cfg.eval_steps}_steps'] = final.mean().item()
    print('inversion loss on public features: ' + ', '.join(f'{k}={v:.4g}' for k, v in res.items()))
    if dist.is_main():                  # under torchrun rank 0 writes, the others wait
        ckpt.save(out_file, kind='amor', models={'Amor': Amor}, cfg=cfg, meta=meta, metrics=res)
        plots.save_curves({f'{cfg.loss} loss': hist['loss']},
                          out_file.with_name(f'{stem}_loss.png'), 'amortizer', logy=True)
        cfg.save(out_file.with_name(f'{stem}_config.json'))
    dist.barrier()
    clock.finish('trainAmor', out_file.with_name(f'{stem}_report.json'), loss=cfg.loss, **res)
    return res


if __name__ == '__main__':
    main()
