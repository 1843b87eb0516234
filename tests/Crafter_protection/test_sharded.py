"""Sharded crafting (common/dist.py claims, crafting.run): several real processes on one run
folder, two independent ones and two torchrun ranks (gloo, CPU), craft every batch exactly once
and merge the same features as one process; a worker killed mid-batch has its batch taken over."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from common import release


ROOT = Path(__file__).resolve().parents[2]
SCRIPT = 'Crafter_protection/featureCrafter.py'
ARGS = ['--beta', '0.5', '--batch_size', '3']          # tiny: 10 images -> 4 batches


def env():
    e = {k: v for k, v in os.environ.items()
         if k not in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')}
    return dict(e, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')


def command(tiny, run, launcher=()):
    return [*launcher, SCRIPT, *tiny.args, *ARGS, '--run', run]


def start(tiny, run, launcher=(sys.executable,)):
    return subprocess.Popen(command(tiny, run, launcher), cwd=ROOT, env=env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(proc, timeout=300):
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def crafted(outputs):
    """Batch indices crafted, one entry per 'batch k: eps-PII' line over all outputs."""
    # not anchored at a line start: a rank's progress bar (stderr, no newline) may precede a line
    return sorted(int(k) for out in outputs for k in re.findall(r'batch (\d+): eps-PII', out))


def features(tiny, run):
    return torch.load(release.run_dir(tiny.cfg(), run) / 'features_eval_test.pt', weights_only=True)


@pytest.fixture(scope='module')
def reference(tiny):
    """One process crafting the 4 batches alone (the same environment as the workers)."""
    tiny.ensure('amor')
    out = finish(start(tiny, 'shard_ref'))
    assert crafted([out]) == [0, 1, 2, 3]
    ref = features(tiny, 'shard_ref')
    assert ref['complete'] and len(ref['names']) == 10
    return ref


def owners(tiny, run):
    folder = release.run_dir(tiny.cfg(), run) / 'batches'
    return [torch.load(f, weights_only=True)['log']['crafted_by'] for f in sorted(folder.glob('*.pt'))]


def same(a, b):
    assert a['names'] == b['names']
    assert torch.equal(a['features'], b['features'])


def test_two_independent_processes_craft_each_batch_once(tiny, reference):
    procs = [start(tiny, 'shard_two'), start(tiny, 'shard_two')]
    outs = [finish(p) for p in procs]
    assert crafted(outs) == [0, 1, 2, 3], outs          # each batch once, none twice
    same(features(tiny, 'shard_two'), reference)
    folder = release.run_dir(tiny.cfg(), 'shard_two')
    assert not list((folder / 'batches').glob('*.claim*')), 'claims must be released'


def test_two_torchrun_ranks_give_the_same_features(tiny, reference):
    # '--' ends torchrun's own options: without it, argparse reads --run as torchrun's --run-path
    out = finish(start(tiny, 'shard_ddp', (sys.executable, '-m', 'torch.distributed.run',
                                           '--standalone', '--nproc_per_node', '2', '--')))
    assert 'rank 1 of 2' in out and crafted([out]) == [0, 1, 2, 3], out
    same(features(tiny, 'shard_ddp'), reference)
    assert len(set(owners(tiny, 'shard_ddp'))) == 2, 'both ranks should craft'


def test_killed_worker_batch_is_taken_over(tiny, reference):
    folder = release.run_dir(tiny.cfg(), 'shard_kill') / 'batches'
    victim = start(tiny, 'shard_kill')
    held, t0 = None, time.time()
    while held is None and victim.poll() is None and time.time() - t0 < 240:
        for c in folder.glob('eval_test_*.claim') if folder.exists() else []:
            if not c.with_suffix('.pt').exists():
                held = c
                break
        else:
            time.sleep(0.01)
    assert held is not None, 'the worker never held a claim'
    os.kill(victim.pid, signal.SIGKILL)                  # mid-batch, its claim still there
    victim.communicate()
    assert held.exists() and not held.with_suffix('.pt').exists()
    k = int(held.stem.split('_')[-1])
    out = finish(start(tiny, 'shard_kill'))
    assert f'batch {k}: taking over from ' in out and f':{victim.pid} (owner ' in out, out
    assert k in crafted([out])
    same(features(tiny, 'shard_kill'), reference)
