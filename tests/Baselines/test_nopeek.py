"""Baselines/nopeek.py at the tiny preset: the distance correlation it minimises, that training
with it lowers dCor(x, Enc(x)) (only alpha differs from the alpha = 0 run), and its release."""
import pytest
import torch

from Baselines import nopeek
from common import release
from tests.Baselines.own_encoder import assert_own_encoder_release

ALPHA = 5.0   # tiny budgets (3 epochs of 5 steps) need the dCor term to dominate the BCE


def test_distance_correlation_properties():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, 4, 4, generator=g)
    dc = nopeek.distance_correlation
    # 1 for a similarity transform (flattened: shape does not matter), symmetric
    assert dc(x, 3 * x + 1).item() == pytest.approx(1.0, abs=1e-4)
    assert dc(x.flatten(1), -2 * x.flatten(1)).item() == pytest.approx(1.0, abs=1e-4)
    z = torch.tanh(x.flatten(1)[:, :7]) + 0.3 * torch.randn(64, 7, generator=g)
    assert dc(x, z).item() == pytest.approx(dc(z, x).item(), abs=1e-6)
    # invariant to scaling either argument (and to shifts)
    assert dc(5 * x, 0.1 * z + 2).item() == pytest.approx(dc(x, z).item(), abs=1e-5)
    # near 0 for independent noise (low dimension, many samples: the estimator's bias is small)
    a, b = torch.randn(1000, 2, generator=g), torch.randn(1000, 2, generator=g)
    assert dc(a, b).item() < 0.15
    # dependence that is not linear still counts; and the gradient is finite
    assert dc(a, a.pow(2)).item() > 0.3
    x.requires_grad_(True)
    dc(x, torch.relu(x)).backward()
    assert torch.isfinite(x.grad).all()


@pytest.fixture(scope='module')
def runs(tiny):
    tiny.ensure('enc')
    return {a: nopeek.main(tiny.args + ['--alpha', str(a)]) for a in (0.0, ALPHA)}


def test_dcor_term_lowers_dependence_of_features_on_images(runs):
    base, np_ = runs[0.0], runs[ALPHA]
    # both start from the same target net, data order and seed: only alpha differs
    assert np_['dcor_heldout_start'] == pytest.approx(base['dcor_heldout_start'])
    assert np_['auc_heldout_start'] == pytest.approx(base['auc_heldout_start'])
    assert np_['dcor_heldout'] < np_['dcor_heldout_start'] - 0.05
    assert np_['dcor_heldout'] < base['dcor_heldout'] - 0.05, (np_['dcor_heldout'], base['dcor_heldout'])
    # and it is what the training loss minimised
    assert np_['history']['dcor_train'][-1] < base['history']['dcor_train'][-1]
    assert len(np_['history']['dcor_heldout']) == 3 and len(np_['history']['auc_heldout']) == 3
    assert np_['protection'] == 'nopeek_alpha5' and base['protection'] == 'nopeek_alpha0'


def test_checkpoint_loads_and_features_are_enc_alpha(tiny, runs):
    assert_own_encoder_release(tiny, release.name('nopeek_alpha', ALPHA))
