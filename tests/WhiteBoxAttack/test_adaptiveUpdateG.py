"""Step 11 at the tiny preset: the adaptive white-box attacker's G really adapts.

The adapted G must lower the attacker's own held-out query loss (the amortized attack with the
adapted G, ||G(z_star(F)) - x||^2 on held-out public queries) below the unadapted prior's, both
recomputed here from the saved checkpoints, and never be worse (best epoch kept, epoch 0 included).
"""
from common import ckpt, config
from Crafter_protection import crafting
from dataset import loader
from WhiteBoxAttack import adaptiveUpdateG as A
from tests.adaptive_helpers import assert_adapted, write_public_release


def _setup(tiny, protection, extra=()):
    cfg = config.parse(A.HP, A.PRESETS, tiny.args + ['--protection', protection, *extra])
    meta = loader.load_meta(tiny.data_dir)
    Enc, G0, _, Amor = A.attacker_models(cfg, meta, 'cpu', protection)
    pub = crafting.public_queries(cfg, protection, loader.load(tiny.data_dir, 'public', 'cpu', meta),
                                  cfg.n_images)
    F = crafting.protected_features(cfg, protection, pub, Enc, 'cpu')
    _, va = A.query_split(len(F), cfg.holdout, cfg.seed)
    return cfg, meta, Enc, G0, Amor, F, pub.images, va


def _check_adapts(tiny, protection, extra=()):
    res = A.main(tiny.args + ['--protection', protection, *extra])
    cfg, meta, Enc, G0, Amor, F, images, va = _setup(tiny, protection, extra)
    G_a = ckpt.build(ckpt.load(cfg, A.adaptive_name(protection), 'gan', meta), 'G')
    before = A.heldout_loss(Enc, G0, Amor, F[va], images[va], cfg)
    after = A.heldout_loss(Enc, G_a, Amor, F[va], images[va], cfg)
    assert_adapted(res, before, after, 'unadapted prior')
    return res


def test_adapted_G_lowers_heldout_query_loss_on_raw_features(tiny):
    tiny.ensure('amor')
    res = _check_adapts(tiny, 'none')
    assert res['queries'] == 16 and res['heldout_queries'] == 4


def test_adapted_G_lowers_heldout_query_loss_on_a_perturbed_release(tiny):
    """A protection known only by its feature file (crafting's layout): raw features scaled and
    shifted, a release the attacker's G can learn to undo."""
    tiny.ensure('amor')
    write_public_release(tiny, A, 'scaled_test', lambda F: 0.5 * F + 0.5 * F.std())
    _check_adapts(tiny, 'scaled_test')


def test_best_epoch_is_kept_so_adapting_never_hurts(tiny):
    """With a step size that wrecks G, the unadapted prior (epoch 0) is what gets saved."""
    tiny.ensure('amor')
    res = A.main(tiny.args + ['--protection', 'none', '--lr', '1.0', '--optimizer', 'rmsprop',
                              '--keep_weight', '0', '--epochs', '2'])
    assert res['heldout_loss_adapted'] <= res['heldout_loss_unadapted']
    assert res['heldout_loss_adapted'] == min(res['heldout_history'])
