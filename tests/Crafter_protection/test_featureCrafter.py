"""Crafter (Algorithm 1) and z-Crafter at the tiny preset: outputs, resumability, refused reruns,
diverged batches. That Crafter protects (and its hypergradient) is tested in test_protection.py
on a world where the truth is known: the tiny GAN is too small to tell faces apart."""
import json

import torch

from common import ckpt, release
from Crafter_protection import crafting, featureCrafter, zCrafter
from dataset import loader


def test_crafter_writes_features_and_resumes(tiny, capsys):
    tiny.ensure('amor')
    summary = featureCrafter.main(tiny.args + ['--beta', '0.5'])
    assert summary['batches'] >= 1 and summary['L_u'] >= 0
    cfg = tiny.cfg()
    out = release.run_dir(cfg, 'crafter_beta0.5')
    feats = ckpt.load_features(out / 'features_eval_test.pt')
    meta = loader.load_meta(tiny.data_dir)
    test = loader.load(tiny.data_dir, 'eval_test', 'cpu', meta)
    assert set(feats['names']) <= set(test.names)
    assert feats['features'].shape[1:] == (64, meta['img_size'] // 4, meta['img_size'] // 4)
    assert torch.isfinite(feats['features']).all()
    for name in ('grid_eval_test.png', 'curves_eval_test.png', 'report_eval_test.json'):
        assert (out / name).exists()
    report = json.loads((out / 'report_eval_test.json').read_text())
    assert 'eps_pii' in report['batches'][0] and report['batches'][0]['hvp_per_step'] > 0
    # a rerun skips the finished batch and leaves the features as they were
    capsys.readouterr()
    featureCrafter.main(tiny.args + ['--beta', '0.5'])
    assert 'done before, skipped' in capsys.readouterr().out
    again = ckpt.load_features(out / 'features_eval_test.pt')
    assert torch.equal(again['features'], feats['features'])


def test_rerun_with_other_settings_is_refused(tiny):
    tiny.ensure('amor')
    featureCrafter.main(tiny.args + ['--beta', '0.7'])
    try:
        featureCrafter.main(tiny.args + ['--beta', '0.7', '--lr', '0.5'])
        raise AssertionError('a different run in the same folder must be refused')
    except SystemExit as e:
        assert 'lr' in str(e.code) and '--run' in str(e.code)


def test_diverging_batch_is_not_written(tiny, monkeypatch, capsys):
    tiny.ensure('amor')
    monkeypatch.setattr(crafting, 'check_finite', lambda step, **v: 'L_p = nan at outer step 0')
    try:
        featureCrafter.main(tiny.args + ['--beta', '0.9'])
        raise AssertionError('a diverged batch must stop the run with an error')
    except SystemExit as e:
        assert 'diverged' in str(e.code)
    out = release.run_dir(tiny.cfg(), 'crafter_beta0.9')
    assert not list((out / 'batches').glob('*.pt')) if (out / 'batches').exists() else True
    assert 'stopped this batch' in capsys.readouterr().out


def test_zcrafter_releases_features_of_generated_images(tiny):
    tiny.ensure('amor')
    summary = zCrafter.main(tiny.args + ['--beta', '1'])
    assert summary['batches'] >= 1
    feats = ckpt.load_features(release.run_dir(tiny.cfg(), 'zcrafter_beta1') / 'features_eval_test.pt')
    assert torch.isfinite(feats['features']).all()
