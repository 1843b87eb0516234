"""prepare_lfw.py on a fake official LFW download."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataset import prepare_lfw, validate
from tests.dataset import fixtures as F


def run(src, out, *extra, size=32, k=3):
    return prepare_lfw.main(['--src', str(src), '--out', str(out), '--img_size', str(size),
                             '--n_private', str(k), '--workers', '1', *map(str, extra)])


def rows(path):
    lines = Path(path).read_text().splitlines()
    return [line.split(',') for line in lines[1:]]


def test_outputs(tmp_path):
    images = F.make_lfw(tmp_path / 'src')
    out = tmp_path / 'out'
    meta = run(tmp_path / 'src', out)
    assert meta == validate.check(out, deep=True)
    names = meta['identity_names']
    assert names == sorted(F.LFW_COUNTS)
    pub, pvt = rows(out / 'pub_id.csv'), rows(out / 'pvt_id.csv')
    # the image without an attribute row is dropped; the rest keep their names
    expect = {f'{p}_{n:04d}.jpg': names.index(p) for p, n in images if (p, n) != F.LFW_NO_ATTR_ROW}
    assert {r[0]: int(r[1]) for r in pub + pvt} == expect
    assert meta['dropped_images_without_attributes'] == 1
    # top 3 by count; Bob, Carol and Dora tie at 4: alphabetical order decides
    assert {names[int(r[1])] for r in pvt} == F.LFW_TOP3
    assert not {r[1] for r in pvt} & {r[1] for r in pub}
    assert 'Ed_Ek' in {names[int(r[1])] for r in pub}          # one image is enough for public
    # the paper's ten attributes, spaces as '_', score > 0 -> 1
    want = ['Male', 'Asian', 'White', 'Black', 'Youth', 'Smiling', 'Eyeglasses', 'Black_Hair',
            'Blond_Hair', 'Wearing_Hat']
    assert meta['attributes'] == want
    cols = [F.LFW_ATTRS.index(a.replace('_', ' ')) for a in want]
    for r in rows(out / 'pub_attri.csv') + rows(out / 'pvt_attri.csv'):
        person, num = r[0][:-9], int(r[0][-8:-4])
        assert [int(v) for v in r[1:]] == [int(F.lfw_score(person, num, j) > 0) for j in cols]
    assert meta['source'] == 'lfw' and meta['img_size'] == 32 and meta['crop'] == 150


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
