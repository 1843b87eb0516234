"""Baselines/shredder.py at the tiny preset: the learned noise grows under its magnitude term, the
release is randomised and reproducible per image (A3 applies), and every split shares one
trained noise."""
import pytest
import torch

from Baselines import shredder
from common import ckpt, release
from common.train import encode
from dataset import loader


@pytest.fixture(scope='module')
def runs(tiny):
    tiny.ensure('enc')
    return {lam: shredder.main(tiny.args + ['--lam', str(lam), '--split', 'eval_test']) for lam in (0.0, 3.0)}


def test_noise_scale_grows_with_its_magnitude_term(runs):
    base, shred = runs[0.0], runs[3.0]
    # both start at the clean feature std; only lam differs
    assert shred['scale_rel_start'] == pytest.approx(1.0) and base['scale_rel_start'] == pytest.approx(1.0)
    assert shred['scale_rel'] > 1.3, shred                      # grows during training ...
    assert shred['scale_rel'] > 1.3 * base['scale_rel'], (shred['scale_rel'], base['scale_rel'])  # ... by lam
    assert len(shred['history']['scale_rel']) == 3
    assert 0.0 <= shred['auc_heldout'] <= 1.0 and 0.0 <= shred['auc_heldout_clean'] <= 1.0


def test_release_is_randomised_reproducible_and_shares_its_noise(tiny, runs):
    meta, cfg = loader.load_meta(tiny.data_dir), tiny.cfg()
    name = shredder.protection_name(3.0)
    assert name == 'shredder_lambda3'
    assert release.randomised('shredder_lambda1') and not release.own_encoder('shredder_lambda1')
    file = release.feature_file(cfg, name, 'eval_test')
    obj = ckpt.load_features(file)
    test = loader.load(tiny.data_dir, 'eval_test', 'cpu', meta)
    test = test.subset([test.names.index(n) for n in obj['names']])
    f0 = encode(ckpt.load_target(cfg, meta, 'cpu').Enc, test, 'cpu')
    ck = ckpt.load(cfg, f'{name}.pt', 'noise', meta)
    assert torch.equal(obj['scale'], ck['models']['noise']['state']['log_scale'].exp())  # the learned scale
    # A3: draw 0 is the published release, the further draws differ, each by the learned scale
    reps = shredder.repeat_releases(obj, f0, test.names, 3)
    assert reps.shape == (3, *f0.shape) and torch.equal(reps[0], obj['features'])
    assert not torch.allclose(reps[1], reps[0]) and not torch.allclose(reps[2], reps[1])
    resid = (reps[1:] - f0) / obj['scale']
    assert abs(resid.std().item() - 1) < 0.1
    # seeded per image: the same image gets the same draw 0 in any selection
    part = [3, 0, 5]
    again = shredder.release_split(f0[part], obj['scale'], [test.names[i] for i in part], obj['seed'])
    assert torch.equal(again, obj['features'][part])
    # a rerun and another split reuse the trained checkpoint (no retraining) ...
    ck_file = ckpt.path(cfg, f'{name}.pt')
    mtime = ck_file.stat().st_mtime_ns
    rerun = shredder.main(tiny.args + ['--lam', '3', '--split', 'eval_test'])
    pub = shredder.main(tiny.args + ['--lam', '3', '--split', 'public', '--n_per_id', '1', '--n_images', '8'])
    assert ck_file.stat().st_mtime_ns == mtime
    assert rerun['scale_rel'] == pub['scale_rel'] == runs[3.0]['scale_rel'] and pub['n'] == 8
    # ... and the rerun writes the same draw 0 of every image
    assert torch.equal(ckpt.load_features(file)['features'], obj['features'])
    assert torch.equal(ckpt.load_features(release.feature_file(cfg, name, 'public'))['scale'], obj['scale'])
