"""Issue 14, input checks: rows 7, 8, 10, 12 and 18 of its table, and bad inputs of our own.

Feature files are checked for finite values, dtype and shape; validate.py and the loader read
identities and image folders the same way; every error a user can cause is one line naming the
file and the fix (status 2), never a traceback."""
import os
import shutil

import pytest
import torch

from common import ckpt, config
from dataset import loader, validate
from Feature2ID import f2id_test
from tests.robustness.helpers import copy_data, one_line_error, run_script, snapshot, stage_args
from WhiteBoxAttack import trainAmor


def _features(tiny, n=6):
    meta = loader.load_meta(tiny.data_dir)
    test = loader.load(tiny.data_dir, 'eval_test', 'cpu', meta)
    s = meta['img_size'] // 4
    return torch.randn(len(test), 64, s, s), list(test.names), (64, s, s)


# ---- row 7: feature files ------------------------------------------------------------------

def test_nan_features_are_refused_by_name(tiny, tmp_path):
    """Row 7: NaN features are refused where they are read (f2id_test scored them at rc 0)."""
    tiny.ensure('f2id')
    feats, names, _ = _features(tiny)
    feats[1, 0, 0, 0] = float('nan')
    f = tmp_path / 'nan.pt'
    ckpt.save_features(f, feats, names)
    with pytest.raises(ckpt.CheckpointError) as e:
        f2id_test.main(stage_args(tiny, tiny.params_dir, tmp=tmp_path) + ['--features', str(f)])
    msg = str(e.value)
    assert 'nan.pt' in msg and 'NaN or infinite' in msg and repr(names[1]) in msg
    assert e.value.code == 2
    assert not (tmp_path / 'results').exists()


@pytest.mark.parametrize('case, needle', [
    ('float64', 'features are float64, expected float32 or float16'),
    ('int', 'features are int64'),
    ('3ch', 'features are 3x'),
    ('flat', 'expected one N x C x H x W tensor'),
    ('dup', 'appears more than once'),            # extra: duplicate names
    ('count', 'feature rows but'),
    ('inf', 'NaN or infinite'),
    ('truncated', 'cannot be read'),              # row 12: truncated feature file
    ('foreign', 'is not a feature file'),
])
def test_bad_feature_files_are_named(tiny, tmp_path, case, needle):
    feats, names, shape = _features(tiny)
    f = tmp_path / 'features_eval_test.pt'
    obj = {'features': feats, 'names': names}
    if case == 'float64':
        obj['features'] = feats.double()
    elif case == 'int':
        obj['features'] = feats.long()
    elif case == '3ch':
        obj['features'] = feats[:, :3]
    elif case == 'flat':
        obj['features'] = feats.flatten(1)
    elif case == 'dup':
        obj['names'] = names[:-1] + names[:1]
    elif case == 'count':
        obj['names'] = names[:-1]
    elif case == 'inf':
        obj['features'][0, 0, 0, 0] = float('inf')
    elif case == 'foreign':
        obj = [feats]
    torch.save(obj, f)
    if case == 'truncated':
        f.write_bytes(f.read_bytes()[:len(f.read_bytes()) // 2])
    split = loader.load(tiny.data_dir, 'eval_test', 'cpu')
    with pytest.raises(ckpt.CheckpointError) as e:
        ckpt.aligned_features(f, split, 'craft them again: python X.py', shape=shape)
    assert needle in str(e.value) and 'features_eval_test.pt' in str(e.value)
    assert 'craft them again' in str(e.value)          # the fix is named


def test_half_precision_features_are_read_as_float32(tiny, tmp_path):
    feats, names, shape = _features(tiny)
    f = tmp_path / 'f16.pt'
    torch.save({'features': feats.half(), 'names': names}, f)
    out = ckpt.aligned_features(f, loader.load(tiny.data_dir, 'eval_test', 'cpu'), shape=shape)
    assert out.dtype == torch.float32 and torch.allclose(out, feats, atol=1e-2)


# ---- rows 8 and 10: validate.py and the loader agree ---------------------------------------

def test_zero_padded_id_overlap_is_caught(tiny, tmp_path):
    """Row 8: public id '024' and private id 24 are one identity for validate.py too."""
    ds = copy_data(tiny, tmp_path / 'ds')
    pvt_id = (ds / 'pvt_id.csv').read_text().splitlines()[1].split(',')[1]
    rows = (ds / 'pub_id.csv').read_text().splitlines()
    name = rows[1].split(',')[0]
    rows[1] = f'{name},0{pvt_id}'
    (ds / 'pub_id.csv').write_text('\n'.join(rows) + '\n')
    for check in (validate.check_structure, loader.load_meta):
        with pytest.raises(validate.DatasetError, match=f'identity 0{pvt_id} .* is also private'):
            check(ds)
    assert validate.main([str(ds), '--deep', 'false']) == 1


def test_stray_file_in_private_is_named_and_ignored(tiny, tmp_path, capsys):
    """Row 10: notes.txt in private/ is reported by validate.py and does not stop the loader."""
    ds = copy_data(tiny, tmp_path / 'ds')
    (ds / 'private' / 'notes.txt').write_text('remember the milk')
    assert validate.main([str(ds)]) == 0
    out = capsys.readouterr().out
    assert 'note:' in out and 'private/notes.txt' in out
    pvt = loader.load(ds, 'private', 'cpu')
    ref = loader.load(tiny.data_dir, 'private', 'cpu')
    assert pvt.names == ref.names and torch.equal(pvt.images, ref.images)


def test_csv_row_naming_a_non_image_is_refused(tiny, tmp_path):
    """Extra: a CSV that lists notes.txt as an image names the line."""
    ds = copy_data(tiny, tmp_path / 'ds')
    (ds / 'private' / 'notes.txt').write_text('x')
    for csv in ('pvt_id.csv', 'eval_test.csv'):
        rows = (ds / csv).read_text().splitlines()
        old = rows[1].split(',')[0]
        rows[1] = rows[1].replace(old, 'notes.txt')
        (ds / csv).write_text('\n'.join(rows) + '\n')
    with pytest.raises(validate.DatasetError, match=r'pvt_id.csv, line 2: .notes.txt. is not an '
                                                    'image file'):
        validate.check_structure(ds)


# ---- row 12: one line, never a traceback ----------------------------------------------------

def test_corrupt_jpeg_is_one_line_with_status_2(tiny, tmp_path):
    """Row 12: a corrupt JPEG stops a stage with one line naming it (status 2); --debug (or
    CRAFTER_DEBUG=1) adds the traceback. Nothing is written."""
    ds = copy_data(tiny, tmp_path / 'ds')
    bad = sorted(os.listdir(ds / 'public'))[3]
    (ds / 'public' / bad).write_bytes(b'\xff\xd8 not really a jpeg')
    args = ['--preset', 'tiny', '--data_dir', ds, '--params_dir', tmp_path / 'p']
    rc, out, err = run_script('Crafter_protection/trainTargetNet.py', args)
    line = one_line_error(err)
    assert rc == 2 and f'public/{bad}' in line and 'cannot be decoded' in line and 'Fix:' in line
    rc, out, err = run_script('Crafter_protection/trainTargetNet.py', args,
                              env={'CRAFTER_DEBUG': '1'})
    assert rc == 2 and 'Traceback' in err and 'decode_image' in err
    assert not (tmp_path / 'p').exists() or snapshot(tmp_path / 'p') == {}


def test_wrong_size_image_is_a_named_user_error(tiny, tmp_path):
    from PIL import Image
    ds = copy_data(tiny, tmp_path / 'ds')
    bad = sorted(os.listdir(ds / 'private'))[0]
    Image.new('RGB', (20, 20)).save(ds / 'private' / bad, format='JPEG')
    with pytest.raises(config.UserError) as e:
        loader.load(ds, 'eval_train', 'cpu')
    assert f'private/{bad}' in str(e.value) and 'img_size' in str(e.value) and e.value.code == 2


# ---- row 18: suggested fixes name real options -----------------------------------------------

def _flags(msg):
    return {w[2:].split('=')[0] for w in msg.split() if w.startswith('--')}


def test_suggested_fixes_name_real_options(tiny, tmp_path):
    """Row 18: an image-size or latent-size mismatch never suggests an option the stage lacks
    (the old hint was `trainTargetNet.py ... --img_size 32`)."""
    from Crafter_protection import trainTargetNet
    tiny.ensure('amor')
    cfg = tiny.cfg()
    meta = loader.load_meta(tiny.data_dir)
    with pytest.raises(ckpt.CheckpointError) as e:
        ckpt.load_target(cfg, dict(meta, img_size=64), 'cpu')
    msg = str(e.value)
    assert 'img_size=32' in msg and '--data_dir' in msg
    assert _flags(msg) <= set(config.parse(trainTargetNet.HP, {}, [])) | {'preset'}, msg
    with pytest.raises(ckpt.CheckpointError) as e:
        ckpt.load_amor(cfg, meta, 'cpu', latent_dim=7)
    msg = str(e.value)
    assert 'latent_dim' in msg and 'trainAmor.py' in msg
    assert _flags(msg) <= set(config.parse(trainAmor.HP, {}, [])) | {'preset'}, msg


# ---- extra bad inputs -----------------------------------------------------------------------

def test_empty_csv_is_named(tiny, tmp_path):
    ds = copy_data(tiny, tmp_path / 'ds')
    (ds / 'pvt_id.csv').write_text('')
    with pytest.raises(validate.DatasetError, match='pvt_id.csv, line 1: file is empty') as e:
        loader.load_meta(ds)
    assert e.value.code == 2


def test_data_dir_that_is_a_file_is_named(tmp_path):
    f = tmp_path / 'data.zip'
    f.write_bytes(b'PK')
    with pytest.raises(validate.DatasetError, match='is a file, not a dataset folder'):
        loader.load_meta(f)


def test_checkpoint_of_another_kind_or_truncated(tiny, tmp_path):
    tiny.ensure('gan')
    tiny.ensure('enc')
    p = tmp_path / 'params'
    p.mkdir()
    shutil.copy(os.path.join(tiny.params_dir, 'gan.pt'), p / 'enc.pt')
    cfg = tiny.cfg()
    cfg.params_dir = str(p)
    meta = loader.load_meta(tiny.data_dir)
    with pytest.raises(ckpt.CheckpointError, match="is not a 'enc' checkpoint .*found 'gan'.*"
                                                   'trainTargetNet.py'):
        ckpt.load_target(cfg, meta, 'cpu')
    data = open(os.path.join(tiny.params_dir, 'enc.pt'), 'rb').read()
    (p / 'enc.pt').write_bytes(data[:len(data) // 3])
    with pytest.raises(ckpt.CheckpointError, match='cannot be read') as e:
        ckpt.load_target(cfg, meta, 'cpu')
    assert e.value.code == 2
