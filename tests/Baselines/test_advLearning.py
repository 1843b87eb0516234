"""Step 13 at the tiny preset: AdvLearn trains Enc_lam and f_lam against its own decoder and
releases Enc_lam(x) like any protection."""
import pytest

from Baselines import advLearning
from tests.Baselines.own_encoder import assert_own_encoder_release

LAM = 0.97   # tiny budgets need a strong weight for the adversarial term to show in 3 epochs


@pytest.fixture(scope='module')
def runs(tiny):
    tiny.ensure('enc')
    return {lam: advLearning.main(tiny.args + ['--lam', str(lam)]) for lam in (0.0, LAM)}


def test_reconstruction_against_own_decoder_rises(runs):
    base, adv = runs[0.0], runs[LAM]
    # both start from the same target net and decoder seed: only lam differs
    assert adv['rec_heldout_start'] == pytest.approx(base['rec_heldout_start'])
    # at lam = 0 the decoder learns to invert Enc; AdvLearn's Enc keeps its decoder from it
    assert base['rec_heldout'] < base['rec_heldout_start']
    assert adv['rec_heldout'] > 1.15 * base['rec_heldout'], (adv['rec_heldout'], base['rec_heldout'])
    assert len(adv['history']['rec_heldout']) == 3 and len(adv['history']['dec_mse']) == 3


def test_checkpoint_loads_and_features_are_enc_lambda(tiny, runs):
    assert_own_encoder_release(tiny, advLearning.protection_name(LAM))
