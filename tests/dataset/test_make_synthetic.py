"""dataset/make_synthetic.py: layout, determinism, attributes, identity signal (tiny preset)."""
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dataset import layout
from dataset import make_synthetic as ms

N_PUB, N_PVT, PER, SIZE = 24, 10, 8, 32   # the tiny preset


def run(out, *extra):
    return ms.main(['--preset', 'tiny', '--out', str(out), *extra])


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return run(tmp_path_factory.mktemp('syn') / 'tiny')


def images(d, csv='pub_id.csv', folder='public'):
    t = pd.read_csv(d / csv)
    x = np.stack([np.asarray(Image.open(d / folder / n).convert('RGB'), np.float32) / 255
                  for n in t.image])
    return x, t.id.values


def test_layout(tiny):
    for f in layout.CSV_FILES + [layout.META, 'grid.png']:
        assert (tiny / f).is_file(), f
    pub, pvt = pd.read_csv(tiny / 'pub_id.csv'), pd.read_csv(tiny / 'pvt_id.csv')
    assert list(pub.columns) == ['image', 'id']
    assert len(pub) == N_PUB * PER and len(pvt) == N_PVT * PER
    assert sorted(set(pub.id)) == list(range(N_PUB))
    assert sorted(set(pvt.id)) == list(range(N_PUB, N_PUB + N_PVT))
    assert (pub.groupby('id').size() == PER).all() and (pvt.groupby('id').size() == PER).all()
    names = list(pub.image) + list(pvt.image)
    assert len(set(names)) == len(names)
    assert all(len(n) == len('000000.jpg') and n[:6].isdigit() for n in names)
    assert sorted(p.name for p in (tiny / 'public').iterdir()) == sorted(pub.image)
    assert sorted(p.name for p in (tiny / 'private').iterdir()) == sorted(pvt.image)
    tr, te = pd.read_csv(tiny / 'eval_train.csv'), pd.read_csv(tiny / 'eval_test.csv')
    assert set(tr.id) == set(te.id) == set(pvt.id)
    assert not set(tr.image) & set(te.image) and set(tr.image) | set(te.image) == set(pvt.image)
    meta = json.loads((tiny / layout.META).read_text())
    assert meta['img_size'] == SIZE and meta['source'] == 'synthetic'
    assert meta['attributes'] == ms.ATTRS and meta['generator']['images_per_id'] == PER
    for split in ('pub_attri.csv', 'pvt_attri.csv', 'eval_train_attri.csv', 'eval_test_attri.csv'):
        assert list(pd.read_csv(tiny / split).columns) == ['image'] + ms.ATTRS


def test_images_decode_at_size(tiny):
    for folder in ('public', 'private'):
        for p in (tiny / folder).iterdir():
            with Image.open(p) as im:
                assert im.format == 'JPEG' and im.mode == 'RGB' and im.size == (SIZE, SIZE)
    assert Image.open(tiny / 'grid.png').size[0] > 8 * SIZE


def test_attributes_binary_and_varied(tiny):
    a = pd.concat([pd.read_csv(tiny / 'pub_attri.csv'), pd.read_csv(tiny / 'pvt_attri.csv')])
    assert len(ms.ATTRS) >= 10
    for name in ms.ATTRS:
        assert set(a[name].unique()) == {0, 1}, f'{name} is constant or not 0/1'
    # identity attributes are fixed per identity, image attributes are not
    ids = pd.concat([pd.read_csv(tiny / 'pub_id.csv'), pd.read_csv(tiny / 'pvt_id.csv')])
    per_id = a.assign(id=ids.id.values).groupby('id').nunique()
    assert (per_id[['Male', 'Black_Hair', 'Bald', 'Big_Nose', 'Wearing_Lipstick']] == 1).all().all()
    assert (per_id[['Smiling', 'Eyeglasses']] > 1).any().all()


def test_same_seed_same_bytes_other_seed_differs(tiny, tmp_path):
    again = run(tmp_path / 'again')
    files = [f'{d}/{p.name}' for d in ('public', 'private') for p in (tiny / d).iterdir()]
    files += layout.CSV_FILES + ['grid.png']
    for f in files:
        assert (again / f).read_bytes() == (tiny / f).read_bytes(), f
    other = run(tmp_path / 'other', '--seed', '1')
    same = sum((other / f).read_bytes() == (tiny / f).read_bytes() for f in files[:N_PUB * PER])
    assert same == 0


def test_identity_signal(tiny):
    x, ids = images(tiny)
    flat = x.reshape(len(x), -1)
    d = np.sqrt(((flat[:, None] - flat[None]) ** 2).mean(-1))
    same = ids[:, None] == ids[None]
    off = ~np.eye(len(x), dtype=bool)
    within, between = d[same & off].mean(), d[~same].mean()
    assert within < 0.85 * between, (within, between)
    # nearest neighbour (leave one out) finds the identity far above chance
    d[~off] = np.inf
    acc = (ids[d.argmin(1)] == ids).mean()
    assert acc > 5 / N_PUB, acc


def test_labels_are_what_is_drawn():
    """Switching one image attribute on or off changes the drawn pixels where it belongs."""
    idp, _ = ms.make_identity(0, 3)
    base, _ = ms.make_image(0, 3, 0, idp, 64, nuisance=0.0)
    base.update(glasses=0.0, hat=0.0, lift=0.0, open=0.0, jpeg_q=0)
    variants = [dict(glasses=1.0, lens_a=0.9), dict(hat=1.0), dict(lift=0.6 * base['mw']),
                dict(open=0.07)]
    imgs = ms.render([base] + [{**base, **v} for v in variants], 64, 2).astype(float)
    # face frame -> pixel rows (nuisance 0: no rotation, centre cx=0, cy=0.1, scale 1.15)
    row = lambda v: int(round((0.1 + 1.15 * v + 1) / 2 * 64))
    eye, mouth, top = row(idp['eye_y']), row(base['my']), row(idp['hairline'] - 0.2)
    band = lambda im, r: np.abs(im[max(r - 4, 0):r + 5] - imgs[0][max(r - 4, 0):r + 5]).mean()
    for (im, r) in ((imgs[1], eye), (imgs[2], top), (imgs[3], mouth), (imgs[4], mouth)):
        assert band(im, r) > 2.0
    assert np.abs(imgs[1][mouth + 3:] - imgs[0][mouth + 3:]).mean() < 0.5   # glasses: not the chin


def test_labels_match_drawing_parameters():
    """Each attribute agrees with the parameter that draws it, over many identities and images."""
    for ident in range(60):
        idp, ia = ms.make_identity(5, ident)
        assert ia['Bald'] == (idp['bald'] > 0)
        assert ia['Bangs'] == (idp['bangs'] > 0) and ia['Wavy_Hair'] == (idp['wavy'] > 0)
        assert ia['Mustache'] == (idp['moustache'] > 0)
        assert ia['No_Beard'] == (idp['beard'] == 0 and idp['goatee'] == 0)
        assert ia['Big_Nose'] == (idp['nose_len'] > 0.14)
        assert ia['Narrow_Eyes'] == (idp['eye_h'] < 0.04)
        assert ia['Bushy_Eyebrows'] == (idp['brow_t'] > 0.035)
        assert ia['Pale_Skin'] == (tuple(idp['skin']) in ms.SKIN[:ms.N_PALE])
        for k in range(4):
            p, a = ms.make_image(5, ident, k, idp, 32)
            assert a['Smiling'] == (p['lift'] > 0.3 * p['mw'])
            assert a['Mouth_Slightly_Open'] == (p['open'] > 0)
            assert a['Eyeglasses'] == (p['glasses'] > 0) and a['Wearing_Hat'] == (p['hat'] > 0)
