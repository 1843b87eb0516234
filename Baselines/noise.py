"""Step 13: the Gaussian-noise baseline, released as protection noise_s<sigma>.

Each private image's feature is released as  F = Enc(x) + sigma * std * N(0, 1),  where std is
one number fixed for the whole run: the standard deviation of the raw Enc features (all
elements) of the first `std_images` public images. sigma is therefore relative to the spread
of clean features. The noise of each image is seeded by (seed, image name, draw), so a rerun
writes identical features, and the same image always gets the same release (draw 0). An
attacker who can query the protection again gets further draws 1, 2, ... of the same image
(the paper's repeated-query attack A3, run by evaluate.py through `releases`).

Writes the same files every protection writes, so every attack and the report read it
unchanged:  <crafted_dir>/<run tag>/noise_s<sigma>/features_<split>.pt (ckpt.save_features,
with sigma and std recorded) and config_<split>.json.

    python Baselines/noise.py --preset demo --sigma 3                       # eval_test
    python Baselines/noise.py --preset demo --sigma 3 --split public --n_per_id 1 --n_images 64
    python Baselines/noise.py --preset demo --sigma 3 --split eval_train --n_per_id 4
"""
import zlib

import torch

from common import ckpt, config, io, release, runtime
from common.train import encode
from dataset import loader

PROTECTION = dict(prefix='noise_s', knob='sigma', label='Gaussian noise (sigma)', style='D--',
                  own_encoder=False, randomised=True, order=30,
                  # full: the point at Crafter's recommended utility; every point gets its eval_train
                  # release and adaptive Feature2ID (seconds; the strongest attack on noise)
                  points={'tiny': [3], 'demo': [2.5, 3], 'celeba-cpu': [1.5, 2, 2.5, 3, 4], 'paper': [3]},
                  full={'tiny': [3], 'demo': [2.5], 'celeba-cpu': [2], 'paper': [3]},
                  train={'tiny': [3], 'demo': [2.5, 3], 'celeba-cpu': [1.5, 2, 2.5, 3, 4], 'paper': [3]},
                  make='Baselines/noise.py --sigma {value} --split {split}')

# ---- hyperparameters (override with --name value or --preset NAME) ----
HP = dict(
    sigma=3.0,           # noise scale in units of the clean feature std (issue 11: at 3 the
                         #   demo's AUC matched Crafter beta 0.01)
    split='eval_test',   # eval_test (evaluation) | eval_train (adaptive Feature2ID, training
    n_per_id=0,          #   scenario) | public (the adaptive attacker's queries); the same
    n_images=0,          #   selection flags as featureCrafter.py
    std_images=2048,     # public images whose raw Enc features define std
)
# what needs more than "finite and >= 0" (common/config.py): counts, learning rates, fractions
RANGES = dict(std_images='>=1')
PRESETS = {
    'tiny': dict(n_per_id=1, n_images=16, std_images=64),
    'demo': dict(n_per_id=1),
    'celeba-cpu': dict(n_per_id=2),
}
# -----------------------------------------------------------------------------------------


def protection_name(sigma):
    return f'noise_s{float(sigma):g}'


def image_generator(seed, name, draw=0):
    """The generator of one image's noise: fixed by (seed, image name, draw)."""
    return torch.Generator().manual_seed(zlib.crc32(f'{seed}:{name}:{draw}'.encode()) + seed * 2 ** 32)


def add_noise(f0, sigma, std, generator):
    """One release of features f0 (any shape): f0 + sigma * std * N(0, 1), noise on the CPU
    from `generator` (so it is the same on every device)."""
    noise = torch.randn(f0.shape, generator=generator, dtype=torch.float32)
    return f0 + (sigma * std) * noise.to(f0.device, f0.dtype)


def release_split(f0, names, sigma, std, seed, draw=0):
    """Release draw `draw` of every image (row of f0), each seeded by its name."""
    return torch.stack([add_noise(f, sigma, std, image_generator(seed, n, draw)) for f, n in zip(f0, names)])


def releases(f0, names, sigma, std, seed, k):
    """k releases of every image (draws 0..k-1): k x N x ...; draw 0 is what was published."""
    return torch.stack([release_split(f0, names, sigma, std, seed, d) for d in range(k)])


def repeat_releases(obj, f0, names, k):
    """A3: k releases of every image of a published feature file `obj` (draw 0 is the published
    one; the attacker queries k - 1 more)."""
    return releases(f0, names, float(obj['sigma']), float(obj['std']), int(obj.get('seed', 0)), k)


def feature_std(Enc, public, n_images, device):
    """std of all elements of the raw Enc features of the first n_images public images."""
    sub = public.subset(torch.arange(min(n_images, len(public)))) if n_images > 0 else public
    return encode(Enc, sub, device).float().std().item()


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, ranges=RANGES, description=__doc__)
    if cfg.split not in ('eval_test', 'eval_train', 'private', 'public'):
        raise config.ConfigError(f'--split {cfg.split!r}: expected eval_test, eval_train, private or public')
    device, clock = runtime.start(cfg, 'noise')
    meta = loader.load_meta(cfg.data_dir)
    Enc = ckpt.load_target(cfg, meta, device).Enc
    std = feature_std(Enc, loader.load(cfg.data_dir, 'public', device, meta), cfg.std_images, device)
    split = release.select(loader.load(cfg.data_dir, cfg.split, device, meta), cfg)
    f0 = encode(Enc, split, device).cpu()
    F = release_split(f0, split.names, cfg.sigma, std, cfg.seed)
    name = protection_name(cfg.sigma)
    out = release.run_dir(cfg, name)
    ckpt.save_features(out / f'features_{cfg.split}.pt', F, split.names, protection=name,
                       split=cfg.split, complete=True, sigma=float(cfg.sigma), std=std, seed=cfg.seed)
    cfg.save(out / f'config_{cfg.split}.json')
    L_u = (F - f0).pow(2).flatten(1).mean(1).mean().item()
    print(f'noise: {len(split)} {cfg.split} images, sigma {cfg.sigma:g} x std {std:.4g} -> '
          f'{io.rel(out / f"features_{cfg.split}.pt")} (L_u {L_u:.4g})')
    clock.finish('noise', n=len(split), std=std, L_u=L_u)
    return {'protection': name, 'std': std, 'n': len(split), 'L_u': L_u, 'out': str(out)}


if __name__ == '__main__':
    main()
