"""Step 2 at the tiny preset: the oracle scores images of the private identities."""

import metrics
from dataset import loader
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
