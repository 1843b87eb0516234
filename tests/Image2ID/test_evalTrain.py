"""Step 3 at the tiny preset: the oracle scores images of the private identities."""

import pytest

import metrics
from common import config
from dataset import loader
from Image2ID import evalTrain
from Image2ID.evalTrain import load_oracle


def test_oracle_trains_and_scores(tiny):
    res = tiny.ensure('eval')
    assert 0.0 <= res['top1'] <= res['top5'] <= 1.0
    meta = loader.load_meta(tiny.data_dir)
    oracle = load_oracle(tiny.cfg(), meta, 'cpu')
    test = loader.load(tiny.data_dir, 'eval_test', 'cpu', meta)
    logits, emb = metrics.oracle_outputs(oracle, test.x())
    assert logits.shape == (len(test), test.n_ids) and emb.shape[0] == len(test)
    # the saved metrics are those of the saved weights
    acc = metrics.topk_accuracy(logits, test.labels, (1, 5))
    assert abs(acc[1] - res['top1']) < 1e-6


def test_attacker_identity_model_learns_public_identities_only(tiny):
    """Step 10: --split public trains on the public identities (never a private one) and tests
    on one held-out public image per identity that it did not train on."""
    import torch

    from common import ckpt
    from Image2ID.evalTrain import public_split
    res = tiny.ensure('attacker_id')
    meta = loader.load_meta(tiny.data_dir)
    pub = loader.load(tiny.data_dir, 'public', 'cpu', meta)
    ck = ckpt.load(tiny.cfg(), 'attacker_id.pkl', 'oracle', meta)
    assert res['split'] == 'public' and res['n_ids'] == pub.n_ids
    assert ck['models']['oracle']['arch']['n_ids'] == pub.n_ids
    train, test = public_split(pub, 0)
    assert len(test) == pub.n_ids and res['n_test'] == len(test)
    assert not set(train.names) & set(test.names) and len(train) + len(test) == len(pub)
    private = set(loader.load(tiny.data_dir, 'eval_train', 'cpu', meta).ids.tolist())
    assert not private & set(torch.as_tensor(pub.ids).tolist())


def test_attacker_identity_model_never_overwrites_the_oracle(tiny):
    """--split public writes attacker_id.pkl by default and refuses --name eval.pkl."""
    tiny.ensure('data')
    with pytest.raises(config.ConfigError, match='eval.pkl is the oracle'):
        evalTrain.main(tiny.args + ['--split', 'public', '--name', 'eval.pkl'])
