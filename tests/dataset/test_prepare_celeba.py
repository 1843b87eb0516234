"""prepare_celeba.py on a fake official CelebA download, and on ../shared/data/celeba64 if present."""
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataset import layout, prepare_celeba, validate
from tests.dataset import fixtures as F


def run(src, out, *extra, size=16, k=3):
    return prepare_celeba.main(['--src', str(src), '--out', str(out), '--img_size', str(size),
                                '--n_private', str(k), '--workers', '1', *map(str, extra)])


def rows(path):
    lines = Path(path).read_text().splitlines()
    return [line.split(',') for line in lines[1:]]


def no_leftovers(parent, name):
    """Neither the output folder nor a temporary build folder of it is left in parent."""
    return not (parent / name).exists() and not [p for p in parent.iterdir()
                                                  if p.name.startswith(f'.{name}.')]


def test_outputs(tmp_path):
    ids = F.make_celeba(tmp_path / 'src')
    out = tmp_path / 'out'
    meta = run(tmp_path / 'src', out)
    assert meta == validate.check(out, deep=True)
    pub, pvt = rows(out / 'pub_id.csv'), rows(out / 'pvt_id.csv')
    # every labelled image lands in exactly one split, under its original name, with its identity
    assert {r[0]: int(r[1]) for r in pub + pvt} == ids
    assert len(pub) + len(pvt) == len(ids)
    # top 3 by image count, tie (5 images each for 3, 7, 12) broken by the smaller number
    pvt_ids = {int(r[1]) for r in pvt}
    assert pvt_ids == F.CELEBA_TOP3
    assert not pvt_ids & {int(r[1]) for r in pub}
    assert {int(r[1]) for r in pub} == set(F.CELEBA_COUNTS) - F.CELEBA_TOP3
    # images: centre crop resized to 16x16 RGB, whatever the source size
    for r in pub[:5] + pvt[:5]:
        folder = 'public' if r in pub else 'private'
        img = Image.open(out / folder / r[0])
        assert img.size == (16, 16) and img.mode == 'RGB' and img.format == 'JPEG'
    # attributes: the official +1/-1 become 1/0, columns in the official order
    assert meta['attributes'] == F.CELEBA_ATTRS
    for r in rows(out / 'pub_attri.csv') + rows(out / 'pvt_attri.csv'):
        i = int(r[0][:6])
        assert [int(v) for v in r[1:]] == [int(F.celeba_attr_value(i, j) > 0)
                                           for j in range(len(F.CELEBA_ATTRS))]
    # dataset.json
    assert meta['source'] == 'celeba' and meta['img_size'] == 16
    assert meta['counts']['private'] == {'images': 16, 'ids': 3}
    assert meta['counts']['public'] == {'images': len(ids) - 16, 'ids': 9}
    assert meta['skipped_unlabelled_images'] == 1
    assert meta['celeba_partition_counts'] == {'test': 13, 'train': 14, 'val': 13}
    assert meta['fingerprint'] == layout.fingerprint(out)
    assert json.loads((out / 'dataset.json').read_text()) == meta


def test_centre_crop(tmp_path):
    """A 70x40 image keeps its central 40x40 square."""
    src = tmp_path / 'src'
    F.make_celeba(src, unlabelled=0)
    arr = np.zeros((40, 70, 3), np.uint8)
    arr[:, 15:55] = 200                       # the central 40 columns are bright
    Image.fromarray(arr).save(src / 'img_align_celeba' / '000002.jpg', quality=100)
    run(src, tmp_path / 'out', size=16)
    got = np.asarray(Image.open(tmp_path / 'out' / 'private' / '000002.jpg')).astype(int)
    assert got.min() > 150


def test_same_size_jpeg_is_copied(tmp_path):
    src = tmp_path / 'src'
    F.make_celeba(src)
    run(src, tmp_path / 'out', size=64)       # every fourth fixture image is 64x64 already
    a = (src / 'img_align_celeba' / '000003.jpg').read_bytes()
    assert a == (tmp_path / 'out' / 'private' / '000003.jpg').read_bytes()


def test_official_tree_and_png(tmp_path):
    """Label files in Anno/ and Eval/, PNG images, LF line ends: still found and read."""
    src = tmp_path / 'src'
    F.make_celeba(src, img_folder='Img/img_align_celeba_png', png=True, crlf=False, anno=True)
    meta = run(src, tmp_path / 'out')
    assert (tmp_path / 'out' / 'public' / '000017.jpg').is_file()
    assert meta['counts']['private']['ids'] == 3


def test_several_image_folders_need_img_dir(tmp_path):
    src = tmp_path / 'src'
    F.make_celeba(src)
    (src / 'other').mkdir()
    Image.new('RGB', (8, 8)).save(src / 'other' / 'x.jpg')
    with pytest.raises(SystemExit, match='--img_dir'):
        run(src, tmp_path / 'out')
    run(src, tmp_path / 'out', '--img_dir', 'img_align_celeba')
    assert (tmp_path / 'out' / 'dataset.json').is_file()


def test_attr_count_mismatch(tmp_path):
    src = tmp_path / 'src'
    F.make_celeba(src)
    p = src / 'list_attr_celeba.txt'
    p.write_bytes(p.read_bytes().replace(b'40 \r\n', b'41\r\n', 1))
    with pytest.raises(SystemExit, match=r'list_attr_celeba.txt, line 1: says 41 images but the file has 40'):
        run(src, tmp_path / 'out')
    assert no_leftovers(tmp_path, 'out')


def test_attr_bad_value(tmp_path):
    src = tmp_path / 'src'
    F.make_celeba(src)
    p = src / 'list_attr_celeba.txt'
    lines = p.read_bytes().split(b'\r\n')
    lines[6] = lines[6].replace(b'-1', b' 0', 1)  # line 7 = 000005.jpg
    p.write_bytes(b'\r\n'.join(lines))
    with pytest.raises(SystemExit, match=r'list_attr_celeba.txt, line 7: attribute .* of 000005.jpg is '
                                         r"'0', expected 1 or -1"):
        run(src, tmp_path / 'out')


def test_attr_missing_count_line(tmp_path):
    src = tmp_path / 'src'
    F.make_celeba(src)
    p = src / 'list_attr_celeba.txt'
    p.write_bytes(p.read_bytes().split(b'\r\n', 1)[1])
    with pytest.raises(SystemExit, match='line 1: expected the number of images'):
        run(src, tmp_path / 'out')


def test_identity_bad_row(tmp_path):
    src = tmp_path / 'src'
    F.make_celeba(src)
    p = src / 'identity_CelebA.txt'
    p.write_bytes(p.read_bytes().replace(b'000004.jpg 10', b'000004.jpg ten'))
    with pytest.raises(SystemExit, match=r"identity_CelebA.txt, line 4: identity 'ten' is not an integer"):
        run(src, tmp_path / 'out')


def test_label_row_without_image(tmp_path):
    src = tmp_path / 'src'
    ids = F.make_celeba(src)
    os.remove(src / 'img_align_celeba' / '000007.jpg')
    with pytest.raises(SystemExit, match=r'1 images named in the label files are not in .*000007.jpg.*'
                                         r'--allow_missing true'):
        run(src, tmp_path / 'out')
    assert no_leftovers(tmp_path, 'out')
    meta = run(src, tmp_path / 'out', '--allow_missing', 'true')
    assert meta['skipped_missing_images'] == 1
    n = sum(c['images'] for s, c in meta['counts'].items() if s in ('public', 'private'))
    assert n == len(ids) - 1


def test_n_private_too_large(tmp_path):
    F.make_celeba(tmp_path / 'src')
    with pytest.raises(SystemExit, match='leaves no public identity'):
        run(tmp_path / 'src', tmp_path / 'out', k=12)


def test_failure_leaves_no_output(tmp_path):
    """A corrupt source image stops the run after the build started: nothing lands."""
    src = tmp_path / 'src'
    F.make_celeba(src)
    (src / 'img_align_celeba' / '000009.jpg').write_bytes(b'\xff\xd8 not a jpeg')
    with pytest.raises(SystemExit, match='000009.jpg'):
        run(src, tmp_path / 'out')
    assert no_leftovers(tmp_path, 'out')


def test_failure_keeps_old_output(tmp_path):
    src = tmp_path / 'src'
    F.make_celeba(src)
    out = tmp_path / 'out'
    run(src, out)
    before = (out / 'dataset.json').read_text()
    with pytest.raises(SystemExit, match='already exists.*--overwrite true'):
        run(src, out)
    (src / 'img_align_celeba' / '000009.jpg').write_bytes(b'garbage')
    with pytest.raises(SystemExit):
        run(src, out, '--overwrite', 'true')
    assert (out / 'dataset.json').read_text() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.out')] == []


def test_src_required():
    with pytest.raises(SystemExit, match='--src is required'):
        prepare_celeba.main([])


def shared_celeba64():
    env = os.environ.get('CELEBA64_DIR')
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / 'shared/data/celeba64'


def test_shared_celeba64(tmp_path):
    """The real data at 32 px, 100 private identities (a few seconds)."""
    src = shared_celeba64()
    if not (src / 'identity_CelebA.txt').is_file():
        pytest.skip(f'{src} is not there (set CELEBA64_DIR to run this test)')
    out = tmp_path / 'celeba32'
    t = time.time()
    meta = prepare_celeba.main(['--src', str(src), '--out', str(out), '--img_size', '32',
                                '--n_private', '100'])
    print(f'prepared in {time.time() - t:.1f}s')
    assert meta['counts']['private']['ids'] == 100
    assert meta['counts']['eval_train']['ids'] == meta['counts']['eval_test']['ids'] == 100
    total = meta['counts']['public']['images'] + meta['counts']['private']['images']
    n_labelled = len((src / 'identity_CelebA.txt').read_text().split())
    assert total == n_labelled // 2
    assert len(meta['attributes']) == 40
    validate.check(out, deep=True)
    assert np.asarray(Image.open(next((out / 'private').iterdir()))).shape == (32, 32, 3)
