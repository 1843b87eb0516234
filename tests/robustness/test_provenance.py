"""Issue 14, rows 1, 2, 9 and 11: nothing stale is reused silently.

Checkpoints record the ids of the checkpoints they read and the dataset's content digest (CSV
tables and image bytes); a crafting folder records the settings and checkpoint ids its batches
were made with, and feature files the same. Each test changes one input and checks the refusal
(one line naming the file and the command that redoes it) and that no output was rewritten.
"""
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from common import ckpt, io
from dataset import layout, loader
from tests.robustness.helpers import copy_data, snapshot, stage_args


def _params_copy(tiny, dest):
    tiny.ensure('amor')
    shutil.copytree(tiny.params_dir, dest)
    return Path(dest)


def _retrain(file, delta=1e-3):
    """Stand-in for retraining a checkpoint: other weights, the rest as its stage writes it."""
    ck = torch.load(file, weights_only=True)
    state = next(iter(ck['models'].values()))['state']
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key] + delta
    ck['id'] = ckpt.models_id(ck['models'])
    io.save_torch(ck, file)
    return ck['id']


def _craft(tiny, params, tmp, *extra):
    from Crafter_protection import featureCrafter
    return featureCrafter.main(stage_args(tiny, params, tmp=tmp) + list(extra))


def _run_folder(tmp):
    folders = list(Path(tmp, 'crafted').glob('*/crafter_beta1'))
    assert len(folders) == 1, folders
    return folders[0]


def _cfg(tiny, params, data=None):
    from common import config
    return config.parse({}, {}, stage_args(tiny, params, data))


def test_checkpoints_record_what_made_them(tiny):
    tiny.ensure('amor')
    cfg = tiny.cfg()
    meta = loader.load_meta(tiny.data_dir)
    amor = ckpt.load(cfg, 'amor.pt', 'amor', meta)
    enc = ckpt.load(cfg, 'enc.pt', 'enc', meta)
    gan = ckpt.load(cfg, 'gan.pt', 'gan', meta)
    assert amor['inputs'] == {'enc.pt': enc['id'], 'gan.pt': gan['id']}
    assert enc['id'] == ckpt.models_id(enc['models'])       # the id is the weights' hash
    assert amor['dataset']['content'] == loader.content_digest(tiny.data_dir)
    assert amor['dataset']['fingerprint'] == meta['fingerprint']


def test_retrained_encoder_makes_its_dependents_stale(tiny, tmp_path):
    """Row 1: after enc.pt is retrained, neither the amortizer trained on the old Enc nor the
    features crafted from it are used; each refusal names the command that remakes it."""
    params = _params_copy(tiny, tmp_path / 'params')
    _craft(tiny, params, tmp_path)
    feats = _run_folder(tmp_path) / 'features_eval_test.pt'
    assert ckpt.load_features(feats)['provenance']['inputs'].keys() == {'enc.pt', 'gan.pt', 'amor.pt'}
    # every crafted batch file carries the provenance of the run that made it
    batches = sorted(_run_folder(tmp_path).rglob('batches/*.pt'))
    assert batches
    for b in batches:
        assert torch.load(b, weights_only=True)['provenance'] == ckpt.load_features(feats)['provenance']
    before = snapshot(tmp_path / 'crafted')
    new_id = _retrain(params / 'enc.pt')
    cfg, meta = _cfg(tiny, params), loader.load_meta(tiny.data_dir)
    with pytest.raises(ckpt.CheckpointError, match=f'amor.pt was made from enc.pt .*{new_id}.*trainAmor.py'):
        ckpt.load(cfg, 'amor.pt', 'amor', meta)
    with pytest.raises(ckpt.CheckpointError, match='features_eval_test.pt was made from enc.pt.*stale.*HINT'):
        ckpt.load_features(feats, 'HINT')
    with pytest.raises(SystemExit, match='amor.pt was made from enc.pt'):
        _craft(tiny, params, tmp_path)
    assert snapshot(tmp_path / 'crafted') == before


def test_retrained_amortizer_is_not_skipped_into(tiny, tmp_path):
    """Row 1, in the crafting folder: batches made with another amor.pt are not 'done before'."""
    params = _params_copy(tiny, tmp_path / 'params')
    _craft(tiny, params, tmp_path)
    before = snapshot(tmp_path / 'crafted')
    _retrain(params / 'amor.pt')
    with pytest.raises(SystemExit) as e:
        _craft(tiny, params, tmp_path)
    msg = str(e.value)
    assert 'amor.pt' in msg and '--run NAME' in msg and 'rm -r' in msg, msg
    assert e.value.code == 2
    assert snapshot(tmp_path / 'crafted') == before


@pytest.fixture(scope='module')
def crafted(tiny, tmp_path_factory):
    tmp = tmp_path_factory.mktemp('row2')
    _craft(tiny, tiny.params_dir, tmp)
    return tmp


@pytest.mark.parametrize('flag, value', [('--first_inner_steps', '4'), ('--inner_momentum', '0.5'),
                                         ('--eps_steps', '7'), ('--attack_steps', '9')])
def test_rerun_with_other_result_settings_is_refused(tiny, crafted, flag, value):
    """Row 2: another result-changing setting is refused, and config_eval_test.json keeps the
    values the batches were made with."""
    tmp = crafted
    folder = _run_folder(tmp)
    before = snapshot(folder)
    with pytest.raises(SystemExit) as e:
        _craft(tiny, tiny.params_dir, tmp, flag, value)
    assert flag[2:] in str(e.value) and '--run NAME' in str(e.value), str(e.value)
    assert snapshot(folder) == before
    saved = json.loads((folder / 'config_eval_test.json').read_text())
    assert str(saved[flag[2:]]) != value


def test_folder_from_before_provenance_gets_it_without_new_claims(tiny, tmp_path, capsys):
    """A crafting folder written before provenance existed still resumes (with a note); its
    config keeps the old settings, and from then on its checkpoint ids are checked."""
    _craft(tiny, tiny.params_dir, tmp_path)
    folder = _run_folder(tmp_path)
    conf = folder / 'config_eval_test.json'
    old = json.loads(conf.read_text())
    del old['provenance']
    old['some_old_setting'] = 1
    conf.write_text(json.dumps(old))
    capsys.readouterr()
    _craft(tiny, tiny.params_dir, tmp_path)
    assert 'records no checkpoint ids' in capsys.readouterr().out
    now = json.loads(conf.read_text())
    assert now['some_old_setting'] == 1 and set(now['provenance']['inputs']) == {'enc.pt', 'gan.pt', 'amor.pt'}


def test_batches_without_a_config_are_not_trusted(tiny, tmp_path):
    _craft(tiny, tiny.params_dir, tmp_path)
    folder = _run_folder(tmp_path)
    (folder / 'config_eval_test.json').unlink()
    with pytest.raises(SystemExit, match='no config_eval_test.json'):
        _craft(tiny, tiny.params_dir, tmp_path)


def test_other_images_under_the_same_csvs_are_another_dataset(tiny, tmp_path):
    """Row 9: same CSV tables (same fingerprint), other image bytes: checkpoints are refused."""
    data = copy_data(tiny, tmp_path / 'data')
    cfg, meta = _cfg(tiny, tiny.params_dir, data), loader.load_meta(data)
    ckpt.load(cfg, 'enc.pt', 'enc', meta)              # an exact copy is the same dataset
    pub = sorted((data / 'public').iterdir())
    shutil.copyfile(pub[1], pub[0])                    # one face replaced by another
    loader._MEMO.clear()
    assert layout.fingerprint(data) == meta['fingerprint']
    with pytest.raises(ckpt.CheckpointError, match='enc.pt was made from other images than .* holds now'):
        ckpt.load(cfg, 'enc.pt', 'enc', loader.load_meta(data))


def test_image_changed_in_place_is_not_hidden_by_the_cache(tiny, tmp_path):
    """Row 11: a JPEG corrupted with the same size and modification time is read again."""
    data = copy_data(tiny, tmp_path / 'data')
    first = loader.load(data, 'private').images.clone()
    assert (data / '.cache' / 'private_u8.pt').exists()
    victim = sorted(loader.list_images(data / 'private'))[3]
    path = data / 'private' / victim
    st = os.stat(path)
    raw = bytearray(path.read_bytes())
    half = len(raw) // 2
    raw[half:] = bytes(len(raw) - half)                # second half zeroed: same size
    path.write_bytes(bytes(raw))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns
    loader._MEMO.clear()
    try:
        again = loader.load(data, 'private')
    except loader.DatasetError as e:                   # undecodable now: named
        assert victim in str(e)
        return
    i = again.names.index(victim)
    assert not torch.equal(again.images[i], first[i])


def test_checkpoints_without_provenance_still_load(tiny, tmp_path):
    """Checkpoints written before ids, inputs and content digests existed load as before."""
    params = _params_copy(tiny, tmp_path / 'params')
    for name in ('enc.pt', 'gan.pt', 'amor.pt'):
        ck = torch.load(params / name, weights_only=True)
        want = ck.pop('id')
        ck.pop('inputs')
        ck['dataset'].pop('content')
        io.save_torch(ck, params / name)
        assert ckpt.file_id(params / name) == want     # the same id, computed from the weights
    cfg, meta = _cfg(tiny, params), loader.load_meta(tiny.data_dir)
    assert ckpt.load(cfg, 'amor.pt', 'amor', meta)['models']
