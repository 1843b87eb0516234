"""Step 4 (and 9 for the A2 prior): train the attacker's prior, a WGAN-GP on public faces (no private identity).

Generator G and critic D as the paper's Tables XI-XII (G1: linear -> transposed convs ->
sigmoid). Saves params/gan.pt (G and D, with latent size and image size), a sample grid
params/gan_samples.png and the loss curves params/gan_loss.png.

    python WhiteBoxAttack/train_gan.py --preset demo
"""

import torch
from tqdm import tqdm

from common import ckpt, config, dist, plots, runtime, wgan
from models import Critic, Generator
from dataset import loader

# ---- hyperparameters (paper defaults; override with --name value or --preset NAME) ----
HP = dict(
    latent_dim=500,      # paper: 500 on CelebA (3000 LFW, 700 training scenario)
    width=64,            # G1 / critic base width (paper: 64)
    g_steps=20000,       # generator updates (not stated in the paper; a GPU-sized default)
    n_critic=5,          # critic steps per generator step (paper: 5)
    gp=10.0,             # gradient-penalty weight (paper: 10)
    lr=4e-4,             # Adam (paper: 4e-4, betas 0.5 / 0.999)
    beta1=0.5,
    beta2=0.999,
    batch_size=64,       # paper: 64
    flip=True,           # random horizontal flips of the public faces
    ema=0.0,             # >0: keep an exponential moving average of G (off in the paper)
    ckpt_every=500,      # generator steps between periodic checkpoints / sample grids
    resume=False,
    name='gan.pt',       # output checkpoint in params_dir; samples, curves, config and report
                         # files take its stem (gan_a2.pt -> gan_a2_samples.png, ...).
                         # The paper's A2 attacker has a prior of its own that the crafter never
                         # saw: another seed and another width, with its own amortizer:
                         # python WhiteBoxAttack/train_gan.py --preset demo --name gan_a2.pt --seed 1 --width A2_WIDTH
                         # python WhiteBoxAttack/trainAmor.py --preset demo --gan gan_a2.pt --name amor_a2.pt
                         # A2_WIDTH (the Makefile's): tiny 12, demo 12, celeba-cpu 24. Per
                         # generator step, against width 16 / 32: demo 24 costs 2.0x (a few CPU
                         # minutes at 500 steps), celeba-cpu 48 would cost 1.8x, 24 costs less.
)
# what needs more than "finite and >= 0" (common/config.py): counts, learning rates, fractions
RANGES = dict(latent_dim='>=1', width='>=1', g_steps='>=1', n_critic='>=1', lr='>0', beta1='[0,1)',
              beta2='[0,1)', batch_size='>=1', ema='[0,1)', ckpt_every='>=1')
PRESETS = {
    'tiny': dict(latent_dim=32, width=8, g_steps=4, n_critic=2, batch_size=16, ckpt_every=2),
    'demo': dict(latent_dim=128, width=16, g_steps=500, ckpt_every=100),
    'celeba-cpu': dict(latent_dim=128, width=32, g_steps=2000, ckpt_every=250),
}
# -----------------------------------------------------------------------------------------


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, ranges=RANGES, description=__doc__)
    device, clock = runtime.start(cfg, 'train_gan')
    meta = loader.load_meta(cfg.data_dir)
    pub = loader.load(cfg.data_dir, 'public', device, meta)
    img_size = meta['img_size']

    G = Generator(cfg.latent_dim, img_size, cfg.width).to(device)
    D = Critic(img_size, cfg.width).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    G_ema = Generator(cfg.latent_dim, img_size, cfg.width).to(device) if cfg.ema > 0 else None
    models = {'G': G, 'D': D} if G_ema is None else {'G': G, 'D': D, 'G_ema': G_ema}
    if G_ema is not None:
        G_ema.load_state_dict(G.state_dict())
    gen = torch.Generator().manual_seed(cfg.seed)    # data order, flips and noise z
    # --resume restores the weights, optimizers and every random stream (gen included), so a
    # resumed run ends with the model an uninterrupted one makes
    start, hist = ckpt.resume(cfg, cfg.name, 'gan', meta, models, {'g': opt_g, 'd': opt_d},
                              generators={'data': gen})
    hist = hist or {'wasserstein': [], 'gp': [], 'g_loss': []}
    dist.broadcast_params(*models.values())      # torchrun: every rank starts from rank 0's
    z_fixed = torch.randn(64, cfg.latent_dim, generator=torch.Generator().manual_seed(1234)).to(device)
    out_file = ckpt.path(cfg, cfg.name)
    stem = out_file.stem
    sample_file = out_file.with_name(f'{stem}_samples.png')

    def real_batch():
        idx = torch.randint(len(pub), (cfg.batch_size,), generator=gen).to(device)
        return loader.augment(pub.x(idx), gen, flip=cfg.flip)

    def save(step, done):
        if not dist.is_main():          # under torchrun rank 0 writes, the others wait
            dist.barrier()
            return
        final = G_ema if G_ema is not None else G
        # periodic: everything --resume needs; final: the prior later stages load
        saved = {'G': final, 'D': D} if done else models
        train = None if done else ckpt.train_state({'g': opt_g, 'd': opt_d}, step, cfg.g_steps,
                                                   hist, unit='generator step',
                                                   generators={'data': gen})
        ckpt.save(out_file, kind='gan', models=saved, cfg=cfg, meta=meta, train=train, done=done,
                  metrics={'wasserstein_last': hist['wasserstein'][-1] if hist['wasserstein'] else None})
        final.eval()
        with torch.no_grad():
            plots.save_grid(final(z_fixed), sample_file, nrow=8, upscale=2)
        final.train()
        dist.barrier()

    G.train()
    D.train()
    # torchrun: every rank draws the same global batches (same streams as one process) and
    # trains on its rows of them; gradients are averaged by hand (dist.average_grads), because
    # DistributedDataParallel cannot take the gradient penalty's double backward (create_graph)
    bar = tqdm(range(start, cfg.g_steps), initial=start, total=cfg.g_steps, desc='WGAN-GP',
               disable=not dist.is_main())
    for step in bar:
        for _ in range(cfg.n_critic):
            z = torch.randn(cfg.batch_size, cfg.latent_dim, generator=gen).to(device)
            with torch.no_grad():
                fake = G(z)
            w, gp = wgan.critic_step(D, opt_d, dist.rows(real_batch()), dist.rows(fake), cfg.gp,
                                     sync=True)
            w, gp = dist.mean(w), dist.mean(gp)
        z = torch.randn(cfg.batch_size, cfg.latent_dim, generator=gen).to(device)
        for p in D.parameters():
            p.requires_grad_(False)
        g_loss = -D(G(dist.rows(z))).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        dist.average_grads(G)
        opt_g.step()
        for p in D.parameters():
            p.requires_grad_(True)
        if G_ema is not None:
            with torch.no_grad():
                for pe, p in zip(G_ema.state_dict().values(), G.state_dict().values()):
                    if pe.dtype.is_floating_point:
                        pe.lerp_(p, 1 - cfg.ema)
                    else:
                        pe.copy_(p)
        hist['wasserstein'].append(w)
        hist['gp'].append(gp)
        hist['g_loss'].append(dist.mean(g_loss.item()))
        if step % 10 == 0:
            bar.set_postfix(W=f'{w:.3f}', gp=f'{gp:.3f}')
        if (step + 1) % cfg.ckpt_every == 0 and step + 1 < cfg.g_steps:
            save(step + 1, done=False)

    dist.sync(G)                # BatchNorm statistics: rank 0's, as saved
    save(cfg.g_steps, done=True)
    if not dist.is_main():
        return
    plots.save_curves({'Wasserstein estimate': hist['wasserstein'], 'gradient penalty': hist['gp']},
                      out_file.with_name(f'{stem}_loss.png'), 'WGAN-GP', xlabel='generator step')
    cfg.save(out_file.with_name(f'{stem}_config.json'))
    wall = clock.summary()['wall_s']
    clock.finish('train_gan', out_file.with_name(f'{stem}_report.json'),
                 wasserstein_last100=sum(hist['wasserstein'][-100:]) / max(1, len(hist['wasserstein'][-100:])),
                 real_images_per_s=round((cfg.g_steps - start) * cfg.n_critic * cfg.batch_size / max(wall, 1e-9), 1),
                 samples=str(sample_file))


if __name__ == '__main__':
    main()
