"""Step 13 at the tiny preset: AdvLearn trains Enc_lam and f_lam against its own decoder and
releases Enc_lam(x) like any protection."""
import pytest
import torch

from Baselines import advLearning
from common import ckpt, release
from dataset import loader

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
    meta = loader.load_meta(tiny.data_dir)
    cfg = tiny.cfg()
    name = advLearning.protection_name(LAM)
    assert release.enc_name(name) == f'{name}.pt'
    net = ckpt.load_target(cfg, meta, 'cpu', f'{name}.pt')
    orig = ckpt.load_target(cfg, meta, 'cpu')
    test = loader.load(tiny.data_dir, 'eval_test', 'cpu', meta)
    cfg.crafted_dir = tiny.args[tiny.args.index('--crafted_dir') + 1]
    released = ckpt.aligned_features(release.feature_file(cfg, name, 'eval_test'), test)
    with torch.no_grad():
        mine, raw = net.Enc(test.x()), orig.Enc(test.x())
    assert torch.allclose(released, mine, atol=1e-5)
    assert (released - raw).norm() > 0.1 * raw.norm()      # not the original Enc
    assert net(test.x()).shape[1] == len(meta['attributes'])   # f_lam comes with it
    # every split the evaluation reads, the public queries one per identity
    pub = loader.load(tiny.data_dir, 'public', 'cpu', meta)
    queries = release.public_queries(cfg, name, pub, 16)
    assert len(queries) == min(16, pub.n_ids)
    assert len(set(queries.ids.tolist())) == len(queries)
    for split in ('eval_train', 'public'):
        obj = ckpt.load_features(release.feature_file(cfg, name, split))
        assert obj['protection'] == name and len(obj['names']) > 0
