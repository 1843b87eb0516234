"""Step 10b: the Gaussian-noise baseline, released as protection noise_s<sigma>.

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
import sys
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from common import ckpt, config, io, runtime  # noqa: E402
from common.train import encode  # noqa: E402
from Crafter_protection import crafting  # noqa: E402
from dataset import loader  # noqa: E402

# ---- hyperparameters (override with --name value or --preset NAME) ----
HP = dict(
    sigma=3.0,           # noise scale in units of the clean feature std (issue 11: at 3 the
                         #   demo's AUC matched Crafter beta 0.01)
    split='eval_test',   # eval_test (evaluation) | eval_train (adaptive Feature2ID, training
    n_per_id=0,          #   scenario) | public (the adaptive attacker's queries); the same
    n_images=0,          #   selection flags as featureCrafter.py
    std_images=2048,     # public images whose raw Enc features define std
)
PRESETS = {
    'tiny': dict(n_per_id=1, n_images=16, std_images=64),
    'demo': dict(n_per_id=1),
    'celeba-cpu': dict(n_per_id=2),
}
# -----------------------------------------------------------------------------------------


def protection_name(sigma):
    return f'noise_s{float(sigma):g}'


def is_randomised(protection):
    """Protections whose release is random (a repeated query gives a new draw): A3 applies."""
    return protection.startswith('noise_s')


def image_generator(seed, name, draw=0):
    """The generator of one image's noise: fixed by (seed, image name, draw)."""
    return torch.Generator().manual_seed(zlib.crc32(f'{seed}:{name}:{draw}'.encode()) + seed * 2 ** 32)


def release(f0, sigma, std, generator):
    """One release of features f0 (any shape): f0 + sigma * std * N(0, 1), noise on the CPU
    from `generator` (so it is the same on every device)."""
    noise = torch.randn(f0.shape, generator=generator, dtype=torch.float32)
    return f0 + (sigma * std) * noise.to(f0.device, f0.dtype)


def release_split(f0, names, sigma, std, seed, draw=0):
    """Release draw `draw` of every image (row of f0), each seeded by its name."""
    return torch.stack([release(f, sigma, std, image_generator(seed, n, draw)) for f, n in zip(f0, names)])


def releases(f0, names, sigma, std, seed, k):
    """k releases of every image (draws 0..k-1): k x N x ...; draw 0 is what was published."""
    return torch.stack([release_split(f0, names, sigma, std, seed, d) for d in range(k)])


def feature_std(Enc, public, n_images, device):
    """std of all elements of the raw Enc features of the first n_images public images."""
    sub = public.subset(torch.arange(min(n_images, len(public)))) if n_images > 0 else public
    return encode(Enc, sub, device).float().std().item()


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, description=__doc__)
    if cfg.split not in ('eval_test', 'eval_train', 'private', 'public'):
        raise config.ConfigError(f'--split {cfg.split!r}: expected eval_test, eval_train, private or public')
    device, clock = runtime.start(cfg, 'noise')
    meta = loader.load_meta(cfg.data_dir)
    Enc = ckpt.load_target(cfg, meta, device).Enc
    std = feature_std(Enc, loader.load(cfg.data_dir, 'public', device, meta), cfg.std_images, device)
    split = crafting.select(loader.load(cfg.data_dir, cfg.split, device, meta), cfg)
    f0 = encode(Enc, split, device).cpu()
    F = release_split(f0, split.names, cfg.sigma, std, cfg.seed)
    name = protection_name(cfg.sigma)
    out = crafting.run_dir(cfg, name)
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
