"""Images per second of the training stages and of evaluate's scoring, before and after.

"before" is the usual data path of the original code: a torch DataLoader over the JPEG files,
decoding and transforming every image with PIL on every epoch, one sample at a time; scoring
reconstructions image by image in a Python loop. "after" is what the stages do here:
every image decoded once into a uint8 tensor (cached on disk), batches taken by index and
augmented in one vectorised call, and batched SSIM/FSIM on tensors.

For each of trainTargetNet, train_gan and evalTrain the same model and optimiser step runs on
both data paths for the same number of batches; images/s counts the images through the step.
Also timed: a stage's data start-up (decode every JPEG vs. load the cache).

    python benchmarks/stages.py --preset demo
"""
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import metrics
from common import config, io, runtime, wgan
from models import Critic, Generator, Oracle, TargetNet
from dataset import layout, loader

# ---- hyperparameters ---------------------------------------------------------------------
HP = dict(
    batches=20,          # timed optimiser steps per stage and data path
    batch_size=64,
    workers=0,           # DataLoader workers of the "before" path (2 cores here: 0 is fastest)
    gan_width=64,
    latent_dim=500,
    oracle_depth=152,
    oracle_stem='imagenet',
    score_images=256,    # reconstructions scored by each SSIM path
    out='',
)
# what needs more than "finite and >= 0" (common/config.py): counts, learning rates, fractions
RANGES = dict(batches='>=1', batch_size='>=1', gan_width='>=1', latent_dim='>=1',
              oracle_depth=[18, 34, 50, 101, 152], score_images='>=1')
PRESETS = {
    'tiny': dict(batches=2, batch_size=8, gan_width=8, latent_dim=16, oracle_depth=18, score_images=8),
    'demo': dict(gan_width=16, latent_dim=128, oracle_depth=18, oracle_stem='small'),
    'celeba-cpu': dict(gan_width=32, latent_dim=128, oracle_depth=18, oracle_stem='small'),
}
# -----------------------------------------------------------------------------------------


class JpegDataset(torch.utils.data.Dataset):
    """The original code's data path: open, decode and convert one JPEG per __getitem__."""

    def __init__(self, root, split, flip=True):
        id_csv, attr_csv, folder = layout.SPLITS[split]
        rows = [line.split(',') for line in (root / attr_csv).read_text().splitlines()[1:]]
        self.files = [root / folder / r[0] for r in rows]
        self.attrs = torch.tensor([[float(v) for v in r[1:]] for r in rows])
        self.flip = flip

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        img = np.asarray(Image.open(self.files[i]).convert('RGB'), dtype=np.float32) / 255
        x = torch.from_numpy(img).permute(2, 0, 1)
        if self.flip and torch.rand(()) < 0.5:
            x = x.flip(2)
        return x, self.attrs[i]


def naive_batches(root, split, cfg, targets=None):
    """(image, target) batches the original way; targets default to the attribute rows."""
    ds = JpegDataset(root, split)
    if targets is not None:
        ds.attrs = targets
    dl = torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, shuffle=True,
                                     num_workers=cfg.workers, drop_last=True)
    while True:
        yield from dl


def our_batches(data, cfg, gen, targets):
    while True:
        for b in loader.batches(len(data), cfg.batch_size, True, gen, drop_last=True):
            yield loader.augment(data.x(b), gen, flip=True), targets[b]


def timed(step, batches, n):
    step(*next(batches))                       # warm-up: allocator, oneDNN primitives
    t0 = time.time()
    for _ in range(n):
        step(*next(batches))
    return time.time() - t0


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, ranges=RANGES, description=__doc__)
    device, clock = runtime.start(cfg, 'benchmark stages')
    root = loader.data_path(cfg.data_dir)
    meta = loader.load_meta(cfg.data_dir)
    S = meta['img_size']
    gen = torch.Generator().manual_seed(cfg.seed)
    rows = []

    # data start-up: decode every public JPEG vs. the cached uint8 tensor
    t0 = time.time()
    for f in JpegDataset(root, 'public').files:
        np.asarray(Image.open(f).convert('RGB'))
    decode_s = time.time() - t0
    loader._MEMO.clear()
    t0 = time.time()
    pub = loader.load(cfg.data_dir, 'public', 'cpu', meta)
    cached_s = time.time() - t0
    rows.append(('data start-up (public split), s', decode_s, cached_s))

    # trainTargetNet: one BCE step
    net = TargetNet(len(meta['attributes']) or 1, S)
    opt = torch.optim.Adam(net.parameters(), 1e-3)

    def target_step(x, a):
        loss = F.binary_cross_entropy_with_logits(net(x), a)
        opt.zero_grad()
        loss.backward()
        opt.step()

    rows.append(stage('trainTargetNet', target_step, root, 'public', pub, cfg, gen))

    # train_gan: one critic step (the GAN's inner loop; 5 of them per generator step)
    G, D = Generator(cfg.latent_dim, S, cfg.gan_width), Critic(S, cfg.gan_width)
    opt_d = torch.optim.Adam(D.parameters(), 4e-4, betas=(0.5, 0.999))

    def critic_step(x, _):
        with torch.no_grad():
            fake = G(torch.randn(len(x), cfg.latent_dim))
        wgan.critic_step(D, opt_d, x, fake, 10.0)

    rows.append(stage('train_gan (critic step)', critic_step, root, 'public', pub, cfg, gen))

    # evalTrain: one identity step
    train = loader.load(cfg.data_dir, 'eval_train', 'cpu', meta)
    oracle = Oracle(train.n_ids, S, cfg.oracle_depth, cfg.oracle_stem)
    opt_o = torch.optim.Adam(oracle.parameters(), 1e-3)
    labels = {n: int(lab) for n, lab in zip(train.names, train.labels)}
    naive_labels = torch.tensor([labels[f.name] for f in JpegDataset(root, 'eval_train').files])

    def oracle_step(x, y):
        loss = F.cross_entropy(oracle(x), y)
        opt_o.zero_grad()
        loss.backward()
        opt_o.step()

    rows.append(stage('evalTrain', oracle_step, root, 'eval_train', train, cfg, gen,
                      naive_labels, train.labels))

    # evaluate's scoring: SSIM and FSIM image by image (a Python loop) vs. one batched call
    test = loader.load(cfg.data_dir, 'eval_test', 'cpu', meta)
    x = test.x()[:cfg.score_images]
    y = (x + 0.1 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    t0 = time.time()
    for i in range(len(x)):
        metrics.ssim(x[i:i + 1], y[i:i + 1])
        metrics.fsim(x[i:i + 1], y[i:i + 1])
    loop_s = time.time() - t0
    t0 = time.time()
    metrics.ssim(x, y)
    metrics.fsim(x, y)
    batched_s = time.time() - t0
    rows.append(('evaluate scoring (SSIM + FSIM), images/s', len(x) / loop_s, len(x) / batched_s))

    print(f"\n{'':<62}{'before':>12}{'after':>12}{'after/before':>14}")
    for name, before, after in rows:
        ratio = before / after if name.endswith(', s') else after / before
        print(f'{name:<62}{before:>12.4g}{after:>12.4g}{ratio:>14.3g}')
    out = Path(cfg.out) if cfg.out else io.repo_path(cfg.results_dir) / runtime.run_tag(cfg)
    io.write_text(out / 'benchmark_stages.json', json.dumps(
        {'rows': [{'what': n, 'before': b, 'after': a} for n, b, a in rows],
         'config': dict(cfg)}, indent=1) + '\n')
    clock.finish('benchmark stages', saved=io.rel(out / 'benchmark_stages.json'))
    return rows


def stage(name, step, root, split, data, cfg, gen, naive_targets=None, targets=None):
    """images/s of one training step on the original data path and on ours."""
    n_img = cfg.batches * cfg.batch_size
    before = n_img / timed(step, naive_batches(root, split, cfg, naive_targets), cfg.batches)
    after = n_img / timed(step, our_batches(data, cfg, gen,
                                            data.attrs if targets is None else targets),
                          cfg.batches)
    return (f'{name}, images/s', before, after)


if __name__ == '__main__':
    main()
