"""Baselines/noise.py at the tiny preset: seeded per image, the requested sigma * std, and the
repeated-query average (A3) that lowers the noise."""
import math

import torch

from Baselines import noise
from common import ckpt, release
from common.train import encode
from dataset import loader


def _setup(tiny):
    tiny.ensure('enc')
    cfg = tiny.cfg()
    meta = loader.load_meta(tiny.data_dir)
    Enc = ckpt.load_target(cfg, meta, 'cpu').Enc
    return cfg, meta, Enc


def test_noise_is_seeded_per_image_with_the_requested_scale(tiny):
    cfg, meta, Enc = _setup(tiny)
    args = tiny.args + ['--split', 'eval_test', '--n_per_id', '0', '--n_images', '0']
    res = noise.main(args + ['--sigma', '2'])
    assert res['protection'] == 'noise_s2'
    file = release.feature_file(cfg, 'noise_s2', 'eval_test')
    obj = ckpt.load_features(file)
    test = loader.load(tiny.data_dir, 'eval_test', 'cpu', meta)
    F = ckpt.aligned_features(file, test)
    f0 = encode(Enc, test, 'cpu')
    # std: the std of raw Enc features of the first std_images public images
    public = loader.load(tiny.data_dir, 'public', 'cpu', meta)
    n = noise.PRESETS['tiny']['std_images']
    std = encode(Enc, public.subset(torch.arange(min(n, len(public)))), 'cpu').std().item()
    assert math.isclose(obj['std'], std, rel_tol=1e-4) and obj['sigma'] == 2.0
    resid = F - f0
    assert abs(resid.std().item() / (2 * std) - 1) < 0.03       # sigma * std, measured
    assert abs(resid.mean().item()) < 0.05 * 2 * std
    # a rerun writes identical features; another sigma scales the same noise
    noise.main(args + ['--sigma', '2'])
    assert torch.equal(ckpt.aligned_features(file, test), F)
    noise.main(args + ['--sigma', '4'])
    F4 = ckpt.aligned_features(release.feature_file(cfg, 'noise_s4', 'eval_test'), test)
    assert torch.allclose(F4 - f0, 2 * resid, atol=1e-4)
    # seeded per image: another selection of the same images gets the same noise per image
    part = [3, 0, 5]
    again = noise.release_split(f0[part], [test.names[i] for i in part], 2.0, obj['std'], cfg.seed)
    assert torch.allclose(again, F[part], atol=1e-6)
    # different images (and different draws of one image) get different noise
    assert not torch.allclose(resid[0], resid[1])


def test_repeated_queries_average_lowers_the_noise(tiny):
    cfg, meta, Enc = _setup(tiny)
    test = loader.load(tiny.data_dir, 'eval_test', 'cpu', meta)
    f0 = encode(Enc, test, 'cpu')
    k, sigma, std = 8, 3.0, 0.5
    R = noise.releases(f0, test.names, sigma, std, cfg.seed, k)
    assert R.shape == (k, *f0.shape)
    # draw 0 is the published release
    assert torch.allclose(R[0], noise.release_split(f0, test.names, sigma, std, cfg.seed), atol=1e-6)
    assert not torch.allclose(R[0], R[1])
    one = (R[0] - f0).std().item()
    avg = (R.mean(0) - f0).std().item()
    assert abs(one / (sigma * std) - 1) < 0.03
    assert abs(avg / (sigma * std / math.sqrt(k)) - 1) < 0.05     # variance / k


def test_release_function_uses_the_generator():
    f0 = torch.zeros(2, 4, 3, 3)
    a = noise.add_noise(f0, 1.5, 2.0, torch.Generator().manual_seed(1))
    b = noise.add_noise(f0, 1.5, 2.0, torch.Generator().manual_seed(1))
    c = noise.add_noise(f0, 1.5, 2.0, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert release.randomised('noise_s3') and not release.randomised('crafter_beta0.01')
