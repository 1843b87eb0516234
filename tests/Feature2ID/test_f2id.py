"""Step 8 at the tiny preset: Feature2ID trains, and f2id_test scores a saved feature file."""
import torch

from common import ckpt
from dataset import loader
from Feature2ID import f2id_test


def test_f2id_train_then_test_on_a_feature_file(tiny, tmp_path):
    res = tiny.ensure('f2id')
    assert 0.0 <= res['top1'] <= res['top5'] <= 1.0
    meta = loader.load_meta(tiny.data_dir)
    Enc = ckpt.load_target(tiny.cfg(), meta, 'cpu').Enc
    test = loader.load(tiny.data_dir, 'eval_test', 'cpu', meta)
    with torch.no_grad():
        feats = Enc(test.x())
    # a feature file in another order, holding half the images: aligned by name
    half = torch.arange(0, len(test), 2).flip(0)
    ckpt.save_features(tmp_path / 'f.pt', feats[half], [test.names[i] for i in half.tolist()])
    out = f2id_test.main(tiny.args + ['--features', str(tmp_path / 'f.pt')])
    assert out['n'] == len(half)
    raw = f2id_test.main(tiny.args)
    assert raw['n'] == len(test) and abs(raw['top1'] - res['top1']) < 1e-6
