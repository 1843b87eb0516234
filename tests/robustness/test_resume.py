"""Issue 14, resume that is safe: rows 3, 13, 15 and 16 of its table.

A finished checkpoint stays finished; a resume with other settings is refused by name with the
commands to run instead; the "finish it with" hint repeats every flag the run used; temporary
files of interrupted writes are removed on the next start."""
import os
import shlex
import shutil
import subprocess
import time

import pytest
import torch

from common import ckpt, config, io
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


def _check_command(cmd, script_mod, want):
    """A suggested command parses with the script's own options into the settings `want`."""
    words = shlex.split(cmd)
    assert words[0] == 'python' and words[1].endswith('.py')
    cfg = config.parse(script_mod.HP, script_mod.PRESETS, words[2:])
    for k, v in want.items():
        if k not in ckpt.RESUME_FREE or k in ('data_dir', 'params_dir'):
            assert cfg[k] == v, (k, cfg[k], v, cmd)
    return cfg


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
    is refused by name (no size-mismatch traceback, no negative speed), with a command that
    continues it with its own settings; the file is untouched."""
    tiny.ensure('gan')
    p = tmp_path / 'params'
    p.mkdir()
    shutil.copy(os.path.join(tiny.params_dir, 'gan.pt'), p / 'gan.pt')
    saved = dict(_unfinish(p / 'gan.pt', 2, 4)['config'], params_dir=str(p))
    before = snapshot(p)
    args = stage_args(tiny, p, tmp=tmp_path) + ['--resume']
    for extra, needle in ((['--width', '12'], 'width=8'), (['--g_steps', '1'], 'g_steps=4')):
        with pytest.raises(ckpt.CheckpointError) as e:
            train_gan.main(args + extra)
        msg = str(e.value)
        assert needle in msg and 'unfinished run' in msg and e.value.code == 2
        keep = msg.split('with its settings: ')[1].split('; or train anew')[0]
        cfg = _check_command(keep, train_gan, saved)
        assert cfg.resume
        fresh = msg.split('(replaces it): ')[1]
        assert extra[0] in fresh and '--resume' not in fresh
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


def test_finish_hint_keeps_the_runs_flags(tiny, tmp_path):
    """Row 15: "finish it with ..." repeats the non-preset flags the run used (here --lr and
    --epochs), so following it continues the same run."""
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
    cmd = str(e.value).split('finish it with: ')[1]
    assert '--lr 0.002' in cmd and '--epochs 3' in cmd and '--flip false' in cmd
    got = _check_command(cmd, trainTargetNet, ck['config'])
    assert got.resume and got.preset == 'tiny'


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
