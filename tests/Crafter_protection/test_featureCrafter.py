"""Crafter (Algorithm 1) and z-Crafter at the tiny preset: outputs, resumability, and that an
outer step moves the features the way the privacy objective asks."""
import json

import torch

from common import ckpt, config
from Crafter_protection import crafting, featureCrafter, implicit, zCrafter
from dataset import loader
from WhiteBoxAttack.attacker import invert


def test_crafter_writes_features_and_resumes(tiny, capsys):
    tiny.ensure('amor')
    summary = featureCrafter.main(tiny.args + ['--beta', '0.5'])
    assert summary['batches'] >= 1 and summary['L_u'] >= 0
    cfg = tiny.cfg()
    out = crafting.run_dir(cfg, 'crafter_beta0.5')
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
    out = crafting.run_dir(tiny.cfg(), 'crafter_beta0.9')
    assert not list((out / 'batches').glob('*.pt')) if (out / 'batches').exists() else True
    assert 'stopped this batch' in capsys.readouterr().out


def test_zcrafter_releases_features_of_generated_images(tiny):
    tiny.ensure('amor')
    summary = zCrafter.main(tiny.args + ['--beta', '1'])
    assert summary['batches'] >= 1
    feats = ckpt.load_features(crafting.run_dir(tiny.cfg(), 'zcrafter_beta1') / 'features_eval_test.pt')
    assert torch.isfinite(feats['features']).all()


def test_one_outer_step_lowers_the_outer_loss(tiny):
    """One step along the implicit hypergradient lowers L = L_p + beta L_u, where L_p is a fixed
    critic's -mean D(G(z*(F))) and z*(F) is re-solved after the step; averaged over 3 seeds."""
    tiny.ensure('amor')
    meta = loader.load_meta(tiny.data_dir)
    cfg = config.Config({**featureCrafter.HP, **featureCrafter.PRESETS['tiny'], 'critic_width': 8})
    Enc, G, _, Amor = ckpt.load_attacker(tiny.cfg(), meta, 'cpu')
    x = loader.load(tiny.data_dir, 'eval_test', 'cpu', meta).x()[:8]
    beta, inner = 0.1, 150
    drops = []
    for seed in range(3):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            f0 = Enc(x)
            prior = G(torch.randn(len(x), G.latent_dim, generator=gen))
        z0, _ = invert(Enc, G, f0, Amor(f0).detach(), inner)
        critic = crafting.PrivacyCritic(meta['img_size'], config.Config({**cfg, 'n_critic': 20}), 'cpu', gen)
        critic.update(G(z0).detach(), prior)
        for p in critic.D.parameters():
            p.requires_grad_(False)

        def outer(F, z_start):
            z, _ = invert(Enc, G, F, z_start, inner)
            with torch.no_grad():
                return (critic.privacy_loss(G(z)) + beta * (F - f0).pow(2).flatten(1).mean(1).mean()).item(), z

        F = f0 + 0.05 * torch.randn(f0.shape, generator=gen)
        L0, z = outer(F, z0)
        z = z.requires_grad_(True)
        dL_dz, = torch.autograd.grad(critic.privacy_loss(G(z)), z)
        dL_dF = 2 * beta * (F - f0) / f0[0].numel() / len(F)
        g, _ = implicit.hypergradient(crafting.inner_loss(Enc, G), z, F, dL_dz, dL_dF, 'cg',
                                      cg_iters=G.latent_dim, cg_damping=0.0)
        L1, _ = outer(F - 0.02 * g / g.abs().max(), z.detach())
        drops.append(L0 - L1)
    assert sum(drops) / len(drops) > 0, drops
