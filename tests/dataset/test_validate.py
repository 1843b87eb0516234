"""dataset/validate.py: one test per refusal, each on a corrupted copy of a prepared dataset."""
import json
import os
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from dataset import layout, validate
from dataset.validate import DatasetError
from tests.dataset import fixtures as F


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
    return F.prepared_celeba(tmp_path_factory.mktemp('celeba'))


@pytest.fixture
def ds(prepared, tmp_path):
    """A fresh copy of the prepared fake CelebA (16 px, 3 private identities)."""
    return F.copy_dataset(prepared, tmp_path / 'ds')


def lines(ds, name):
    return (ds / name).read_text().splitlines()


def write(ds, name, rows):
    (ds / name).write_text('\n'.join(rows) + '\n')


def edit(ds, name, line, new):
    """Replace 1-based line `line` of a CSV (None deletes it)."""
    rows = lines(ds, name)
    if new is None:
        del rows[line - 1]
    else:
        rows[line - 1] = new
    write(ds, name, rows)


def refuses(ds, *parts, deep=False):
    with pytest.raises(DatasetError) as e:
        validate.check(ds, deep=deep)
    msg = str(e.value)
    for p in parts:
        assert p in msg, f'{p!r} not in {msg!r}'
    assert 'Fix:' in msg
    return msg


def test_sound_dataset(ds, capsys):
    meta = validate.check(ds, deep=True)
    assert meta == json.loads((ds / 'dataset.json').read_text())
    assert validate.main([str(ds)]) == 0
    assert capsys.readouterr().out.startswith('OK ')


def test_cli_failure(ds, capsys):
    os.remove(ds / 'pub_id.csv')
    assert validate.main([str(ds), '--deep', 'false']) == 1
    assert 'pub_id.csv' in capsys.readouterr().err


def test_missing_folder(tmp_path):
    refuses(tmp_path / 'nope', 'nope', 'does not exist', 'make_synthetic.py --out',
            'prepare_celeba.py')


def test_missing_meta(ds):
    os.remove(ds / 'dataset.json')
    refuses(ds, 'dataset.json', 'missing', 'make_synthetic.py', 'prepare_celeba.py')


def test_bad_meta_json(ds):
    (ds / 'dataset.json').write_text('{"img_size": 16,\n oops}')
    refuses(ds, 'dataset.json, line 2', 'not valid JSON')


@pytest.mark.parametrize('name', layout.CSV_FILES)
def test_missing_csv(ds, name):
    os.remove(ds / name)
    refuses(ds, name, 'missing', 'prepare_celeba.py --src CELEBA_DIR --out')


def test_id_header(ds):
    edit(ds, 'pub_id.csv', 1, 'image,identity')
    refuses(ds, 'pub_id.csv, line 1', 'expected exactly "image,id"')


def test_attr_header(ds):
    rows = lines(ds, 'pub_attri.csv')
    edit(ds, 'pub_attri.csv', 1, rows[0].replace('Smiling', 'Smile'))
    refuses(ds, 'pub_attri.csv, line 1', 'differ from dataset.json', 'Smile')


def test_attr_columns_differ_between_files(ds):
    """Same names, another order, in one file only."""
    head = lines(ds, 'eval_test_attri.csv')[0].split(',')
    head[1], head[2] = head[2], head[1]
    edit(ds, 'eval_test_attri.csv', 1, ','.join(head))
    refuses(ds, 'eval_test_attri.csv, line 1', 'other order')


def test_non_integer_id(ds):
    name = lines(ds, 'pub_id.csv')[3].split(',')[0]
    edit(ds, 'pub_id.csv', 4, f'{name},x12')
    refuses(ds, 'pub_id.csv, line 4', "identity 'x12' is not an integer")


def test_attr_not_binary(ds):
    row = lines(ds, 'pvt_attri.csv')[4].split(',')
    row[3] = '-1'
    edit(ds, 'pvt_attri.csv', 5, ','.join(row))
    refuses(ds, 'pvt_attri.csv, line 5', "is '-1', expected 0 or 1")


def test_wrong_field_count(ds):
    edit(ds, 'pub_attri.csv', 3, lines(ds, 'pub_attri.csv')[2] + ',1')
    refuses(ds, 'pub_attri.csv, line 3', '42 fields, the header has 41')


def test_duplicate_row(ds):
    rows = lines(ds, 'pub_id.csv')
    write(ds, 'pub_id.csv', rows + [rows[2]])
    refuses(ds, f'pub_id.csv, line {len(rows) + 1}', 'duplicate row', 'already on line 3')


def test_row_names_missing_image(ds):
    name = lines(ds, 'pvt_id.csv')[1].split(',')[0]
    os.remove(ds / 'private' / name)
    refuses(ds, 'pvt_id.csv, line 2', f'{name!r} does not exist in', 'private/')


def test_identity_public_and_private(ds):
    pid = lines(ds, 'pvt_id.csv')[1].split(',')[1]
    name = lines(ds, 'pub_id.csv')[5].split(',')[0]
    edit(ds, 'pub_id.csv', 6, f'{name},{pid}')
    refuses(ds, 'pub_id.csv, line 6', f'identity {pid}', 'also private', 'must not overlap')


def test_identities_are_integers_as_the_loader_reads_them(ds):
    """'024' and '24' are one identity: a zero-padded public copy of a private id overlaps, and
    an eval row spelling its private identity with a leading zero is consistent."""
    from dataset import loader
    pid = lines(ds, 'pvt_id.csv')[1].split(',')[1]
    name, epid = lines(ds, 'eval_train.csv')[2].split(',')
    edit(ds, 'eval_train.csv', 3, f'{name},00{epid}')
    validate.check_structure(ds)                          # the same identity, written otherwise
    train = loader.load(ds, 'eval_train', 'cpu')
    assert train.ids[1].item() == int(epid)
    pub = lines(ds, 'pub_id.csv')[5].split(',')[0]
    edit(ds, 'pub_id.csv', 6, f'{pub},0{pid}')
    refuses(ds, 'pub_id.csv, line 6', f'identity 0{pid}', 'also private', f"written '{pid}' there",
            'compared as integers')


def test_stray_files_are_named_not_fatal(ds, capsys):
    """A file that is not an image in public/ or private/ is named by the CLI and ignored."""
    (ds / 'private' / 'notes.txt').write_text('x')
    (ds / 'public' / 'Thumbs.db').write_bytes(b'x')
    assert validate.stray_files(ds) == [f'{validate.io.rel(ds)}/private/notes.txt',
                                        f'{validate.io.rel(ds)}/public/Thumbs.db']
    assert validate.main([str(ds)]) == 0
    out = capsys.readouterr().out
    assert out.startswith('OK ') and 'note: 2 file(s)' in out and 'notes.txt' in out
    assert 'notes.txt' not in validate.list_images(ds / 'private')


def test_dataset_errors_exit_2_as_one_line(tmp_path):
    """Uncaught, a DatasetError is a one-line user error with status 2 (config.UserError)."""
    with pytest.raises(DatasetError) as e:
        validate.check_structure(tmp_path / 'nope')
    assert e.value.code == 2 and str(e.value.code) == str(e.value)


def test_empty_split(ds):
    for name in ('eval_test.csv', 'eval_test_attri.csv'):
        write(ds, name, lines(ds, name)[:1])
    refuses(ds, 'eval_test.csv', 'eval_test split is empty')


def test_private_identity_missing_from_eval_test(ds):
    """Move every eval_test image of one identity to eval_train: identity missing from eval_test."""
    pid = lines(ds, 'eval_test.csv')[1].split(',')[1]
    move = {r.split(',')[0] for r in lines(ds, 'eval_test.csv')[1:] if r.split(',')[1] == pid}
    for src, dst in (('eval_test.csv', 'eval_train.csv'), ('eval_test_attri.csv', 'eval_train_attri.csv')):
        rows = lines(ds, src)
        write(ds, src, [r for r in rows if r.split(',')[0] not in move])
        write(ds, dst, lines(ds, dst) + [r for r in rows if r.split(',')[0] in move])
    first = next(i for i, r in enumerate(lines(ds, 'pvt_id.csv'), 1) if r.split(',')[1:] == [pid])
    refuses(ds, f'pvt_id.csv, line {first}', f'identity {pid}', 'no image in eval_test.csv')


def test_eval_image_not_private(ds):
    pub = lines(ds, 'pub_id.csv')[1]
    name = pub.split(',')[0]
    shutil.copy(ds / 'public' / name, ds / 'private' / name)
    write(ds, 'eval_train.csv', lines(ds, 'eval_train.csv') + [pub])
    write(ds, 'eval_train_attri.csv', lines(ds, 'eval_train_attri.csv') + [lines(ds, 'pub_attri.csv')[1]])
    n = len(lines(ds, 'eval_train.csv'))
    refuses(ds, f'eval_train.csv, line {n}', 'is not in pvt_id.csv')


def test_eval_identity_differs_from_private(ds):
    name, pid = lines(ds, 'eval_train.csv')[2].split(',')
    other = next(r.split(',')[1] for r in lines(ds, 'pvt_id.csv')[1:] if r.split(',')[1] != pid)
    edit(ds, 'eval_train.csv', 3, f'{name},{other}')
    refuses(ds, 'eval_train.csv, line 3', f'has identity {other} but pvt_id.csv line')


def test_eval_row_missing(ds):
    name = lines(ds, 'eval_train.csv')[1].split(',')[0]
    edit(ds, 'eval_train.csv', 2, None)
    edit(ds, 'eval_train_attri.csv', 2, None)
    line = next(i for i, r in enumerate(lines(ds, 'pvt_id.csv'), 1) if r.startswith(name + ','))
    refuses(ds, f'pvt_id.csv, line {line}', 'in neither eval_train.csv nor eval_test.csv')


def test_eval_splits_overlap(ds):
    row, arow = lines(ds, 'eval_train.csv')[1], lines(ds, 'eval_train_attri.csv')[1]
    write(ds, 'eval_test.csv', lines(ds, 'eval_test.csv') + [row])
    write(ds, 'eval_test_attri.csv', lines(ds, 'eval_test_attri.csv') + [arow])
    n = len(lines(ds, 'eval_test.csv'))
    refuses(ds, f'eval_test.csv, line {n}', 'also in eval_train.csv (line 2', 'disjoint')


def test_id_and_attr_images_differ(ds):
    name = lines(ds, 'pub_id.csv')[2].split(',')[0]
    edit(ds, 'pub_attri.csv', 3, None)
    refuses(ds, 'pub_id.csv, line 3', f'{name!r} has no row in pub_attri.csv')


def test_attr_image_not_in_id_csv(ds):
    name = lines(ds, 'pub_id.csv')[2].split(',')[0]
    edit(ds, 'pub_id.csv', 3, None)
    refuses(ds, 'pub_attri.csv, line 3', f'{name!r} has no row in pub_id.csv')


def test_eval_attributes_differ_from_private(ds):
    row = lines(ds, 'eval_train_attri.csv')[2].split(',')
    row[5] = '1' if row[5] == '0' else '0'
    edit(ds, 'eval_train_attri.csv', 3, ','.join(row))
    refuses(ds, 'eval_train_attri.csv, line 3', 'differ from pvt_attri.csv line')


def test_blank_lines_keep_line_numbers(ds):
    rows = lines(ds, 'pub_id.csv')
    rows.insert(2, '')
    rows[4] = rows[4].split(',')[0] + ',abc'          # now file line 5
    write(ds, 'pub_id.csv', rows)
    refuses(ds, 'pub_id.csv, line 5', "'abc' is not an integer")


# ------------------------------------------------------------------------------------ images

def test_corrupt_image(ds):
    name = lines(ds, 'pvt_id.csv')[3].split(',')[0]
    validate.check(ds, deep=False)                      # structure alone does not see it
    (ds / 'private' / name).write_bytes(b'\xff\xd8\xff\xe0 garbage')
    refuses(ds, f'private/{name}', 'cannot be decoded', 'prepare_celeba.py', deep=True)


def test_truncated_image(ds):
    name = lines(ds, 'pub_id.csv')[1].split(',')[0]
    arr = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    layout.save_jpeg(arr, ds / 'public' / name)
    data = (ds / 'public' / name).read_bytes()
    (ds / 'public' / name).write_bytes(data[:len(data) // 2])
    with pytest.raises(DatasetError, match=f'public/{name}: image cannot be decoded'):
        validate.decode_image(ds / 'public' / name, 16)


def test_wrong_image_size(ds):
    name = lines(ds, 'pub_id.csv')[2].split(',')[0]
    Image.new('RGB', (20, 18)).save(ds / 'public' / name)
    refuses(ds, f'public/{name}', 'is 20x18', 'img_size 16', deep=True)


def test_decode_image(ds):
    name = lines(ds, 'pub_id.csv')[1].split(',')[0]
    arr = validate.decode_image(ds / 'public' / name, 16)
    assert arr.dtype == np.uint8 and arr.shape == (16, 16, 3)
    Image.new('L', (16, 16), 7).save(ds / 'public' / name)     # grey files come back as RGB
    assert validate.decode_image(ds / 'public' / name, 16).shape == (16, 16, 3)


def test_structure_is_fast(tmp_path):
    """16k images: the structure check takes milliseconds (images are empty files here)."""
    n = 16000
    (tmp_path / 'public').mkdir()
    (tmp_path / 'private').mkdir()
    pub = [(f'{i:06d}.jpg', i // 20, tuple((i >> j) & 1 for j in range(40))) for i in range(n - 2000)]
    pvt = [(f'{i:06d}.jpg', i // 20, tuple((i >> j) & 1 for j in range(40))) for i in range(n - 2000, n)]
    for r in pub:
        (tmp_path / 'public' / r[0]).touch()
    for r in pvt:
        (tmp_path / 'private' / r[0]).touch()
    layout.write_tables(tmp_path, pub, pvt, F.CELEBA_ATTRS, img_size=64, source='celeba', seed=0)
    validate.check_structure(tmp_path)
    t = time.perf_counter()
    validate.check_structure(tmp_path)
    assert time.perf_counter() - t < 1.0
