"""Step 15 at the tiny preset: the adaptive white-box attacker's G really adapts.

The adapted G must lower the attacker's own held-out query loss (the amortized attack with the
adapted G on held-out public queries; by default the identity distance of the attacker's own
identity model, step 10, with --select pixels ||G(z_star(F)) - x||^2) below the unadapted
prior's, both recomputed here from the saved checkpoints, and never be worse (best epoch kept,
epoch 0 included).
"""
import torch

from common import adaptive, ckpt, config, release
from dataset import loader
from WhiteBoxAttack import adaptiveUpdateG as A
from tests.adaptive_helpers import assert_adapted, write_public_release


def _setup(tiny, protection, extra=()):
    cfg = config.parse(A.HP, A.PRESETS, tiny.args + ['--protection', protection, *extra])
    meta = loader.load_meta(tiny.data_dir)
    Enc, G0, _, Amor = adaptive.attacker_models(cfg, meta, 'cpu', protection)
    pub = release.public_queries(cfg, protection, loader.load(tiny.data_dir, 'public', 'cpu', meta),
                                  cfg.n_images)
    F = release.protected_features(cfg, protection, pub, Enc, 'cpu')
    _, va = adaptive.query_split(len(F), cfg.holdout, cfg.seed)
    return cfg, meta, Enc, G0, Amor, F, pub.images, va


def _check_adapts(tiny, protection, extra=()):
    res = A.main(tiny.args + ['--protection', protection, *extra])
    cfg, meta, Enc, G0, Amor, F, images, va = _setup(tiny, protection, extra)
    idnet = adaptive.identity_model(cfg, meta, 'cpu')
    G_a = ckpt.build(ckpt.load(cfg, adaptive.g_name(protection), 'gan', meta), 'G')
    before = A.attack_scores(Enc, G0, Amor, F[va], images[va], cfg, idnet)[cfg.select]
    after = A.attack_scores(Enc, G_a, Amor, F[va], images[va], cfg, idnet)[cfg.select]
    assert_adapted(res, before, after, 'unadapted prior')
    return res


def test_adapted_G_lowers_heldout_identity_distance_on_raw_features(tiny):
    tiny.ensure('amor')
    tiny.ensure('attacker_id')
    res = _check_adapts(tiny, 'none')
    assert res['select'] == 'identity' and res['queries'] == 16 and res['heldout_queries'] == 4


def test_adapted_G_lowers_heldout_pixel_loss_on_raw_features(tiny):
    tiny.ensure('amor')
    res = _check_adapts(tiny, 'none', ['--select', 'pixels', '--id_weight', '0'])
    assert res['select'] == 'pixels'


def test_identity_distance_and_its_gradient(tiny):
    """0 for the image itself, > 0 for another face; the adaptation loss carries id_weight times
    it, with a gradient into the reconstruction (what steers G and Dec toward identity)."""
    tiny.ensure('attacker_id')
    cfg = config.parse(A.HP, A.PRESETS, tiny.args)
    meta = loader.load_meta(tiny.data_dir)
    idnet = adaptive.identity_model(cfg, meta, 'cpu')
    x = loader.load(tiny.data_dir, 'public', 'cpu', meta).images[:8]
    same = adaptive.identity_distance(idnet, x.float().div(255), x)
    assert same.abs().max() < 1e-5
    recon = x.flip(0).float().div(255).requires_grad_(True)
    other = adaptive.identity_distance(idnet, recon, x)
    assert (other > 1e-4).all(), other
    pix = adaptive.attack_loss(recon, x, idnet, 0.0)
    full = adaptive.attack_loss(recon, x, idnet, 0.5)
    assert torch.allclose(full - pix, 0.5 * other.mean(), atol=1e-6)
    g_pix, = torch.autograd.grad(pix, recon, retain_graph=True)
    g_full, = torch.autograd.grad(full, recon)
    assert (g_full - g_pix).abs().sum() > 0


def _scores(identity, pixels=0.0):
    q = torch.as_tensor(identity, dtype=torch.float)
    return {'pixels': pixels, 'identity': q.mean().item(),
            'per_query': {'pixels': torch.full_like(q, pixels), 'identity': q}}


def test_selector_keeps_the_best_epoch_and_counts_patience():
    net = torch.nn.Linear(1, 1)
    sel = adaptive.Selector('identity', net, _scores([0.5, 0.6, 0.4, 0.5], 1.0), min_gain_se=1.0)
    with torch.no_grad():
        net.weight.fill_(3.0)
    assert sel.record(1, net, _scores([0.3, 0.4, 0.2, 0.3], 0.1))       # better by identity
    with torch.no_grad():
        net.weight.fill_(7.0)
    assert not sel.record(2, net, _scores([0.7, 0.6, 0.5, 0.6], 0.01))  # better pixels: not kept
    m = sel.metrics()
    epoch, state = sel.chosen()
    assert epoch == 1 and m['best_epoch'] == 1 and sel.waited == 1 and state['weight'].item() == 3.0
    assert [round(v, 4) for v in m['heldout_history']] == [0.5, 0.3, 0.6]
    assert m['heldout_pixels_adapted'] == 0.1 and abs(m['heldout_gain'] - 0.2) < 1e-6


def test_selector_keeps_the_unadapted_model_when_the_gain_is_within_noise():
    """A held-out gain smaller than one standard error of the paired differences is not
    evidence: the unadapted model (epoch 0) is kept; with min_gain_se 0 any gain is kept."""
    for k, want in ((1.0, 0), (0.0, 1)):
        net = torch.nn.Linear(1, 1)
        w0 = net.weight.item()
        sel = adaptive.Selector('identity', net, _scores([0.5, 0.5, 0.5, 0.5]), min_gain_se=k)
        with torch.no_grad():
            net.weight.fill_(w0 + 1)
        sel.record(1, net, _scores([0.3, 0.7, 0.3, 0.66]))       # mean gain 0.01, SE ~0.1
        epoch, state = sel.chosen()
        assert epoch == want and sel.metrics()['best_epoch'] == want
        assert state['weight'].item() == (w0 if want == 0 else w0 + 1)
        assert sel.metrics()['best_heldout_epoch'] == 1


def test_adapted_G_lowers_heldout_query_loss_on_a_perturbed_release(tiny):
    """A protection known only by its feature file (crafting's layout): raw features scaled and
    shifted, a release the attacker's G can learn to undo."""
    tiny.ensure('amor')
    tiny.ensure('attacker_id')
    write_public_release(tiny, A, 'scaled_test', lambda F: 0.5 * F + 0.5 * F.std())
    _check_adapts(tiny, 'scaled_test')


def test_best_epoch_is_kept_so_adapting_never_hurts(tiny):
    """With a step size that wrecks G, the unadapted prior (epoch 0) is what gets saved."""
    tiny.ensure('amor')
    tiny.ensure('attacker_id')
    res = A.main(tiny.args + ['--protection', 'none', '--lr', '1.0', '--optimizer', 'rmsprop',
                              '--keep_weight', '0', '--epochs', '2'])
    assert res['heldout_loss_adapted'] <= res['heldout_loss_unadapted']
    assert res['heldout_loss_adapted'] == min(res['heldout_history'])
