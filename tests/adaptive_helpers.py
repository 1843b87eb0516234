"""Shared checks of the adaptive attacks' tests (not collected by pytest)."""


def assert_adapted(res, before, after, unadapted):
    """The script's reported held-out losses match a recomputation, and adapting lowered it."""
    assert abs(before - res['heldout_loss_unadapted']) < 1e-6
    assert abs(after - res['heldout_loss_adapted']) < 1e-6
    assert res['best_epoch'] >= 1, f'no epoch improved on the {unadapted}: it did not adapt'
    assert after < before, (before, after)


def write_public_release(tiny, script, name, transform):
    """A protection known only by its feature file (crafting's layout): transform(raw features of
    the tiny public split) written as the public release `name`."""
    import torch

    from common import ckpt, config, release
    from dataset import loader
    cfg = config.parse(script.HP, script.PRESETS, tiny.args)
    meta = loader.load_meta(tiny.data_dir)
    Enc = ckpt.load_target(cfg, meta, 'cpu').Enc
    pub = loader.load(tiny.data_dir, 'public', 'cpu', meta)
    with torch.no_grad():
        F = Enc(pub.x())
    ckpt.save_features(release.feature_file(cfg, name, 'public'), transform(F), pub.names)
