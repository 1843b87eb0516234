"""Issue 14, resume that is safe: rows 3, 13, 15 and 16 of its table.

A finished checkpoint stays finished; a resume with other settings is refused, listing the
settings that differ (saved and now); an unfinished checkpoint names its script with --resume;
temporary files of interrupted writes are removed on the next start."""
import os
import shutil
import subprocess
import time

import pytest
import torch

from common import ckpt, io
from Crafter_protection import trainTargetNet
from dataset import loader
from tests.robustness.helpers import snapshot, stage_args
from WhiteBoxAttack import train_gan


def _dead_pid():
    p = subprocess.Popen(['true'])
    p.wait()
    return p.pid


def _unfinish(file, progress_step=1, total=2):
    """Turn a finished checkpoint into a periodic one (as a kill mid-training leaves)."""
    ck = torch.load(file, weights_only=True)
    ck['done'] = False
    ck['train'] = ckpt.train_state({'opt': torch.optim.Adam([torch.zeros(1, requires_grad=True)])},
                                   progress_step, total, {'loss': [1.0]})
    torch.save(ck, file)
    return ck


def test_finished_checkpoint_stays_finished_and_orphans_go(tiny, tmp_path, capsys):
    """Row 3: `--resume` on a finished enc.pt says "already done", exits 0 and rewrites nothing.
    Row 16: the temporary files a killed write left behind are removed on that start; a live
    writer's and a young old-style one are kept."""
    tiny.ensure('enc')
    p = tmp_path / 'params'
    p.mkdir()
    shutil.copy(os.path.join(tiny.params_dir, 'enc.pt'), p / 'enc.pt')
    dead = p / f'.enc.pt.{_dead_pid()}.abc123.tmp'
    live = p / f'.enc.pt.{os.getppid()}.def456.tmp'
    old = p / '.enc.pt.ghi789.tmp'
    young = p / '.enc_config.json.jkl012.tmp'
    for f in (dead, live, old, young):
        f.write_bytes(b'half a file')
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    before = snapshot(p)
    io._CLEANED.clear()
    with pytest.raises(SystemExit) as e:
        trainTargetNet.main(stage_args(tiny, p, tmp=tmp_path) + ['--resume'])
    assert e.value.code == 0 and isinstance(e.value, ckpt.AlreadyDone)
    out = capsys.readouterr().out
    assert 'already done' in out and 'removed 2 unfinished temporary file' in out
    after = snapshot(p)
    assert after['enc.pt'] == before['enc.pt']
    assert set(after) == {'enc.pt', live.name, young.name}      # nothing new, orphans gone


def test_resume_with_other_width_or_fewer_steps_is_refused(tiny, tmp_path):
    """Row 13: a periodic gan.pt resumed with another --width, or a --g_steps below its step,
    is refused by name (no size-mismatch traceback, no negative speed), listing the saved and
    the asked-for values and the two ways on; the file is untouched."""
    tiny.ensure('gan')
    p = tmp_path / 'params'
    p.mkdir()
    shutil.copy(os.path.join(tiny.params_dir, 'gan.pt'), p / 'gan.pt')
    _unfinish(p / 'gan.pt', 2, 4)
    before = snapshot(p)
    args = stage_args(tiny, p, tmp=tmp_path) + ['--resume']
    for extra, saved, now in ((['--width', '12'], 'width=8', 'width=12'),
                              (['--g_steps', '1'], 'g_steps=4', 'g_steps=1')):
        with pytest.raises(ckpt.CheckpointError) as e:
            train_gan.main(args + extra)
        msg = str(e.value)
        assert f'unfinished run (saved at epoch 2/4) with {saved}' in msg, msg
        assert f'asks for {now}' in msg and e.value.code == 2
        assert 'rerun with the saved values, or without --resume to train anew' in msg
        assert snapshot(p) == before


def test_finished_checkpoint_with_other_settings_is_refused(tiny, tmp_path):
    """Row 3/13: a finished enc.pt is neither "done" for other settings nor silently retrained."""
    tiny.ensure('enc')
    p = tmp_path / 'params'
    p.mkdir()
    shutil.copy(os.path.join(tiny.params_dir, 'enc.pt'), p / 'enc.pt')
    before = snapshot(p)
    with pytest.raises(ckpt.CheckpointError, match=r'finished run with lr=0.001.*lr=0.002'):
        trainTargetNet.main(stage_args(tiny, p, tmp=tmp_path) + ['--resume', '--lr', '0.002'])
    assert snapshot(p) == before


def test_unfinished_checkpoint_names_its_script_with_resume(tiny, tmp_path):
    """Row 15: a later stage refuses an unfinished enc.pt with its script, this run's preset and
    folders and --resume; resuming with other settings then lists them (saved and now)."""
    tiny.ensure('enc')
    p = tmp_path / 'params'
    p.mkdir()
    shutil.copy(os.path.join(tiny.params_dir, 'enc.pt'), p / 'enc.pt')
    ck = _unfinish(p / 'enc.pt')
    ck['config'].update(lr=0.002, epochs=3, params_dir=str(p), flip=False)
    torch.save(ck, p / 'enc.pt')
    cfg = tiny.cfg()
    cfg.params_dir = str(p)
    meta = loader.load_meta(tiny.data_dir)
    with pytest.raises(ckpt.CheckpointError) as e:
        ckpt.load_target(cfg, meta, 'cpu')
    msg = str(e.value)
    assert 'enc.pt is unfinished training (saved at epoch 1/2)' in msg, msg
    assert (f'finish it with: python Crafter_protection/trainTargetNet.py --preset tiny '
            f'--data_dir {tiny.data_dir} --params_dir {p} --resume (or: make stages PRESET=tiny') in msg, msg
    with pytest.raises(ckpt.CheckpointError, match=r'unfinished run .* with .*lr=0.002.*asks for .*lr=0.001'):
        trainTargetNet.main(stage_args(tiny, p, tmp=tmp_path) + ['--resume'])


def test_orphans_of_atomic_folders_and_other_files(tmp_path):
    """Row 16, unit level: only temporary names are touched; a dead writer's folder goes too."""
    d = tmp_path / 'out'
    d.mkdir()
    (d / f'.run.{_dead_pid()}.x.tmp').mkdir()
    (d / '.old_legacy_dir.tmp').mkdir()
    (d / '.keep_me').write_text('x')
    (d / 'model.tmp').write_text('x')          # not a hidden temporary name: user data
    removed = io.clean_orphans(d, force=True)
    assert len(removed) == 1 and sorted(os.listdir(d)) == ['.keep_me', '.old_legacy_dir.tmp',
                                                           'model.tmp']
    # a fresh atomic write names its temporary file after its process
    with io.atomic_path(d / 'f.txt') as tmp:
        assert io.orphan_owner(os.path.basename(tmp)) == os.getpid()
        open(tmp, 'w').write('ok')
    assert (d / 'f.txt').read_text() == 'ok'
