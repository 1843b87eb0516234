"""Step 16 at the tiny preset: the adaptive black-box decoder really adapts.

The adapted Dec must lower the attacker's own held-out query loss (on held-out public queries:
by default the identity distance of the attacker's own identity model, step 10, with --select
pixels ||Dec(F) - x||^2) below the raw decoder's, recomputed here from the saved checkpoints,
and never be worse than it (the best epoch is kept, epoch 0 included).
"""
import torch

from BlackBoxAttack import adaptiveTrainDecoder as A
from common import adaptive, ckpt, config, release
from dataset import loader
from common.adaptive import identity_model, query_split
from tests.adaptive_helpers import assert_adapted, write_public_release


def _check_adapts(tiny, protection, extra=()):
    res = A.main(tiny.args + ['--protection', protection, *extra])
    cfg = config.parse(A.HP, A.PRESETS, tiny.args + ['--protection', protection, *extra])
    meta = loader.load_meta(tiny.data_dir)
    Enc = ckpt.load_target(cfg, meta, 'cpu', release.enc_name(protection)).Enc
    pub = release.public_queries(cfg, protection, loader.load(tiny.data_dir, 'public', 'cpu', meta),
                                  cfg.n_images)
    F = release.protected_features(cfg, protection, pub, Enc, 'cpu')
    _, va = query_split(len(F), cfg.holdout, cfg.seed)
    Dec0 = ckpt.build(ckpt.load(cfg, 'dec.pkl', 'dec', meta), 'Dec')
    Dec_a = ckpt.build(ckpt.load(cfg, adaptive.dec_name(protection), 'dec', meta), 'Dec')
    idnet = identity_model(cfg, meta, 'cpu')
    before = A.decoder_scores(Dec0, F[va], pub.images[va], idnet)[cfg.select]
    after = A.decoder_scores(Dec_a, F[va], pub.images[va], idnet)[cfg.select]
    assert_adapted(res, before, after, 'raw decoder')
    return res


def test_adapted_decoder_lowers_heldout_identity_distance_on_raw_features(tiny):
    tiny.ensure('dec')
    tiny.ensure('attacker_id')
    res = _check_adapts(tiny, 'none')
    assert res['select'] == 'identity' and res['pairs'] == 16 and res['heldout_pairs'] == 4


def test_adapted_decoder_lowers_heldout_pixel_loss_on_raw_features(tiny):
    tiny.ensure('dec')
    res = _check_adapts(tiny, 'none', ['--select', 'pixels', '--id_weight', '0'])
    assert res['select'] == 'pixels'


def test_adapted_decoder_lowers_heldout_query_loss_on_noisy_release(tiny):
    """A protection known only by its feature file (crafting's layout): Gaussian noise."""
    tiny.ensure('dec')
    tiny.ensure('attacker_id')
    write_public_release(tiny, A, 'noisy_test', lambda F: F + 2 * F.std() * torch.randn(
        F.shape, generator=torch.Generator().manual_seed(0)))
    _check_adapts(tiny, 'noisy_test')


def test_overfitting_is_stopped_on_heldout_queries(tiny):
    """With a step size that wrecks Dec, the raw decoder (epoch 0) is what gets saved."""
    tiny.ensure('dec')
    tiny.ensure('attacker_id')
    res = A.main(tiny.args + ['--protection', 'none', '--lr', '1.0', '--epochs', '3', '--patience', '2'])
    assert res['heldout_loss_adapted'] <= res['heldout_loss_unadapted']
    assert res['heldout_loss_adapted'] == min(res['heldout_history'])
    assert res['epochs_run'] <= 3
