"""prepare_lfw.py on a fake official LFW download."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dataset import layout, loader, prepare_lfw, validate
from tests.dataset import fixtures as F


def run(src, out, *extra, size=32, k=3):
    return prepare_lfw.main(['--src', str(src), '--out', str(out), '--img_size', str(size),
                             '--n_private', str(k), '--workers', '1', *map(str, extra)])


def rows(path):
    lines = Path(path).read_text().splitlines()
    return [line.split(',') for line in lines[1:]]


WANT = ['Male', 'Smiling', 'Eyeglasses', 'Wearing_Hat', 'Mouth_Slightly_Open', 'No_Beard',
        'Gray_Hair', 'Brown_Hair', 'Bald', 'Senior']
REAL = Path(__file__).resolve().parents[2] / '..' / 'shared' / 'data' / 'lfw'


def test_outputs(tmp_path):
    images = F.make_lfw(tmp_path / 'src')
    out = tmp_path / 'out'
    meta = run(tmp_path / 'src', out)
    assert meta == validate.check(out, deep=True)
    names = meta['identity_names']
    assert names == sorted(F.LFW_COUNTS)
    pub, pvt = rows(out / 'pub_id.csv'), rows(out / 'pvt_id.csv')
    # every public image is kept, with or without an attribute row; a private image without a
    # row is dropped; the rest keep their names
    expect = {f'{p}_{n:04d}.jpg': names.index(p) for p, n in images
              if (p, n) != F.LFW_PRIVATE_NO_ATTR}
    assert {r[0]: int(r[1]) for r in pub + pvt} == expect
    assert meta['dropped_private_images_without_attributes'] == 1
    # private: top 3 among the people with attribute rows (Abe has the most images but no row);
    # Bob, Carol and Dora tie at 4: alphabetical order decides
    assert {names[int(r[1])] for r in pvt} == F.LFW_TOP3
    assert not {r[1] for r in pvt} & {r[1] for r in pub}
    pub_people = {names[int(r[1])] for r in pub}
    assert {'Ed_Ek', 'Abe_Ace', 'Hal_Hu'} <= pub_people          # one image / no rows: public
    # pub_attri.csv: only the public images that have a row; dataset.json counts the others
    no_row = sorted(r[0] for r in pub if not F.lfw_has_row(r[0][:-9], int(r[0][-8:-4])))
    assert len(no_row) == 6 + 2 + 1 and 'Fay_Fox_0003.jpg' in no_row
    assert meta['public_images_without_attributes'] == len(no_row)
    assert meta['public_images_with_attributes'] == len(pub) - len(no_row)
    assert sorted(set(r[0] for r in pub) - {r[0] for r in rows(out / 'pub_attri.csv')}) == no_row
    # the private images all keep their attribute rows, and eval_* repeat them
    assert sorted(r[0] for r in rows(out / 'pvt_attri.csv')) == sorted(r[0] for r in pvt)
    ev = rows(out / 'eval_train_attri.csv') + rows(out / 'eval_test_attri.csv')
    assert sorted(r[0] for r in ev) == sorted(r[0] for r in pvt)
    # our ten attributes, spaces as '_', score > 0 -> 1
    assert meta['attributes'] == WANT and len(WANT) == 10
    cols = [F.LFW_ATTRS.index(a.replace('_', ' ')) for a in WANT]
    for r in rows(out / 'pub_attri.csv') + rows(out / 'pvt_attri.csv'):
        person, num = r[0][:-9], int(r[0][-8:-4])
        assert [int(v) for v in r[1:]] == [int(F.lfw_score(person, num, j) > 0) for j in cols]
    assert meta['source'] == 'lfw' and meta['img_size'] == 32 and meta['crop'] == 150
    assert meta['fingerprint'] == layout.fingerprint(out)      # refreshed after the rewrite


def test_loader_public_without_attributes(tmp_path):
    """loader.load of public holds every public image; attributes only through with_attrs()."""
    F.make_lfw(tmp_path / 'src')
    out = tmp_path / 'out'
    meta = run(tmp_path / 'src', out)
    pub = loader.load(out, 'public')
    assert len(pub) == meta['counts']['public']['images'] == len(rows(out / 'pub_id.csv'))
    assert pub.images.shape[1:] == (3, 32, 32) and pub.attr_names == WANT
    has = {n: bool(h) for n, h in zip(pub.names, pub.has_attrs.tolist())}
    assert has == {n: F.lfw_has_row(n[:-9], int(n[-8:-4])) for n in pub.names}
    with pytest.raises(validate.DatasetError, match=r'9 of 18 images without an attribute row.*'
                                                    r'with_attrs\(\)'):
        pub.attrs
    tagged = pub.with_attrs()               # what the target net trains on
    assert len(tagged) == meta['public_images_with_attributes'] == 9
    assert not torch.isnan(tagged.attrs).any() and tagged.attrs.shape == (9, 10)
    want = {r[0]: [float(v) for v in r[1:]] for r in rows(out / 'pub_attri.csv')}
    assert {n: a for n, a in zip(tagged.names, tagged.attrs.tolist())} == want
    assert tagged.n_ids == pub.n_ids       # the same identity numbering as the whole split
    held = pub.subset(torch.tensor([0, 1]))   # subsets and holdouts work on the partial split
    assert len(held) == 2
    for split in ('private', 'eval_train', 'eval_test'):
        s = loader.load(out, split)
        assert s.with_attrs() is s and not torch.isnan(s.attrs).any()


def test_validate_counts_missing_attribute_rows(tmp_path):
    F.make_lfw(tmp_path / 'src')
    out = tmp_path / 'out'
    run(tmp_path / 'src', out)
    bad = F.copy_dataset(out, tmp_path / 'bad')
    p = bad / 'pub_attri.csv'
    lines = p.read_text().splitlines()
    p.write_text('\n'.join(lines[:1] + lines[2:]) + '\n')     # one more public row lost
    with pytest.raises(validate.DatasetError, match=r'pub_attri.csv: 10 images of pub_id.csv have '
                       r'no row here, but dataset.json "public_images_without_attributes" says 9'):
        validate.check(bad, deep=False)
    # undeclared (a CelebA-style folder): a missing public row is an error as before
    bad2 = F.copy_dataset(out, tmp_path / 'bad2')
    m = json.loads((bad2 / 'dataset.json').read_text())
    m['public_images_without_attributes'] = 0
    (bad2 / 'dataset.json').write_text(json.dumps(m))
    with pytest.raises(validate.DatasetError, match=r'has no row in pub_attri.csv \(9 images'):
        validate.check(bad2, deep=False)
    m['public_images_without_attributes'] = -1
    (bad2 / 'dataset.json').write_text(json.dumps(m))
    with pytest.raises(validate.DatasetError, match='expected a count'):
        validate.check(bad2, deep=False)


def test_max_public(tmp_path):
    """The cap keeps every public person with attribute rows, then whole people, most first."""
    F.make_lfw(tmp_path / 'src')
    meta = run(tmp_path / 'src', tmp_path / 'out', '--max_public', 13)
    names = meta['identity_names']
    pub = rows(tmp_path / 'out' / 'pub_id.csv')
    # with rows: Dora 4, Fay 3, Gus 2, Ed 1 = 10; then Abe (6) does not fit, Hal (2) does
    assert {names[int(r[1])] for r in pub} == {'Dora_Dee', 'Fay_Fox', 'Gus_Gold', 'Ed_Ek', 'Hal_Hu'}
    assert len(pub) == 12 and meta['public_images_left_out_by_max_public'] == 6
    validate.check(tmp_path / 'out', deep=False)


def test_private_needs_attribute_rows(tmp_path):
    F.make_lfw(tmp_path / 'src')
    with pytest.raises(SystemExit, match=r'--n_private 8: only 7 people have attribute rows'):
        run(tmp_path / 'src', tmp_path / 'out', k=8)
    # all 7 people with rows private: no public image left for the target net
    with pytest.raises(SystemExit, match=r'no public image has a row .* target net'):
        run(tmp_path / 'src', tmp_path / 'out', k=7)
    assert not (tmp_path / 'out').exists()


def test_presets_and_default_out(monkeypatch):
    assert prepare_lfw.PRESETS['lfw-cpu'] == dict(src='../shared/data/lfw', img_size=32,
                                                  n_private=38, max_public=0)
    assert prepare_lfw.HP['img_size'] == 128 and prepare_lfw.HP['n_private'] == 38
    seen = []

    def stop(cfg):
        seen.append(cfg.out)
        raise SystemExit('stop')
    monkeypatch.setattr(prepare_lfw, 'out_dir', stop)
    monkeypatch.setattr(prepare_lfw, 'resolve_input', lambda p, *b: Path('/'))
    for argv in (['--preset', 'lfw-cpu'], ['--preset', 'paper-lfw', '--src', 'x'],
                 ['--src', 'x', '--img_size', '48'], ['--src', 'x', '--out', 'somewhere']):
        with pytest.raises(SystemExit, match='stop'):
            prepare_lfw.main(argv)
    assert seen == ['dataset/lfw32', 'dataset/lfw128', 'dataset/lfw48', 'somewhere']


@pytest.mark.skipif(not (REAL / 'lfw_attributes.txt').is_file(), reason='../shared/data/lfw absent')
def test_real_lfw_selection():
    """On the real LFW: 38 private people with attributes, every other image public."""
    people_dir = prepare_lfw.find_people_dir(REAL)
    images = prepare_lfw.list_people(people_dir)
    names, scores, dups = prepare_lfw.read_attributes(REAL / 'lfw_attributes.txt')
    idx, cols = prepare_lfw.choose_attributes(prepare_lfw.DEFAULT_ATTRIBUTES, names, REAL)
    assert cols == WANT and len(names) == 73
    attrs = {k: tuple(int(scores[k][i] > 0) for i in idx) for k in images if k in scores}
    plan = prepare_lfw.select(images, attrs, 38)
    assert len(images) == 13233 and len(plan['people']) == 5749
    assert len({k[0] for k in plan['private']}) == 38 and not plan['single']
    assert len({k[0] for k in plan['public']}) == 5711
    assert len(plan['public']) + len(plan['private']) + plan['dropped_private'] == 13233
    assert len(plan['public']) - len(plan['no_attr']) == 535     # the target net's images
    assert all(k in attrs for k in plan['private'])
    # every chosen attribute is present and absent among the private images
    rate = np.array([attrs[k] for k in plan['private']]).mean(0)
    assert ((rate > 0.05) & (rate < 0.95)).all(), dict(zip(cols, rate.round(2)))


def test_central_crop(tmp_path):
    """The central 150x150 of the 250x250 image (all red) fills the output."""
    F.make_lfw(tmp_path / 'src')
    run(tmp_path / 'src', tmp_path / 'out', size=32)
    arr = np.asarray(Image.open(tmp_path / 'out' / 'private' / 'Alice_Adams_0001.jpg')).astype(int)
    assert arr.shape == (32, 32, 3)
    assert arr[..., 0].min() > 200 and arr[..., 2].max() < 60


def test_choose_attributes(tmp_path):
    F.make_lfw(tmp_path / 'src')
    meta = run(tmp_path / 'src', tmp_path / 'out', '--attributes', "Black_Hair,5 o' Clock Shadow,Bald")
    assert meta['attributes'] == ['Black_Hair', "5_o'_Clock_Shadow", 'Bald']
    assert validate.check(tmp_path / 'out', deep=False) == meta


def test_unknown_attribute(tmp_path):
    F.make_lfw(tmp_path / 'src')
    with pytest.raises(SystemExit, match="'Smilling' is not an attribute of .*close matches: Smiling"):
        run(tmp_path / 'src', tmp_path / 'out', '--attributes', 'Male,Smilling')
    assert not (tmp_path / 'out').exists()


def test_missing_attribute_file(tmp_path):
    F.make_lfw(tmp_path / 'src', with_attr_file=False)
    with pytest.raises(SystemExit, match=r'lfw_attributes.txt not found.*--no_attributes true'):
        run(tmp_path / 'src', tmp_path / 'out')
    assert not (tmp_path / 'out').exists()


def test_no_attributes(tmp_path, capsys):
    images = F.make_lfw(tmp_path / 'src', with_attr_file=False)
    out = tmp_path / 'out'
    meta = run(tmp_path / 'src', out, '--no_attributes', 'true')
    assert 'utility (attribute) metrics will be skipped' in capsys.readouterr().out
    assert meta['attributes'] == []
    assert (out / 'pvt_attri.csv').read_text().splitlines()[0] == 'image'
    assert sum(meta['counts'][s]['images'] for s in ('public', 'private')) == len(images)
    validate.check(out, deep=True)


def test_two_people_folders(tmp_path):
    F.make_lfw(tmp_path / 'src')
    F.make_lfw(tmp_path / 'src' / 'copy', with_attr_file=False)
    with pytest.raises(SystemExit, match='2 LFW people folders.*--people_dir'):
        run(tmp_path / 'src', tmp_path / 'out')
    meta = run(tmp_path / 'src', tmp_path / 'out', '--people_dir', 'lfw-deepfunneled')
    assert meta['people_dir'] == str(tmp_path / 'src' / 'lfw-deepfunneled')


def test_bad_attribute_row(tmp_path):
    F.make_lfw(tmp_path / 'src')
    p = tmp_path / 'src' / 'lfw_attributes.txt'
    lines = p.read_text().splitlines()
    lines[4] = lines[4].rsplit('\t', 1)[0]                  # line 5 loses a score
    p.write_text('\n'.join(lines) + '\n')
    with pytest.raises(SystemExit, match='lfw_attributes.txt, line 5: 74 tab-separated fields, expected 75'):
        run(tmp_path / 'src', tmp_path / 'out')
    assert not (tmp_path / 'out').exists()
