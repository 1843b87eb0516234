"""Issue 14, the kill test: `kill -9` a stage at three random points, then `--resume` (training)
or rerun (crafting) until it finishes; the result must be bit-identical to an uninterrupted run.

Each stage runs as a user would run it (a subprocess). The kill delays are a seeded random
choice within the uninterrupted run's wall time, so some kills land during training, some
during a checkpoint write, some after a checkpoint; whatever they hit, the end result must
not change. trainTargetNet and train_gan resume from their periodic checkpoints (weights,
optimizers and every random stream); featureCrafter keeps its finished batches.
"""
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.robustness.helpers import ROOT, stage_args

KILLS = 3

# stage -> (script, extra flags: more periodic checkpoints than the tiny preset has, output)
STAGES = {
    'trainTargetNet': ('Crafter_protection/trainTargetNet.py', ['--epochs', '4'], 'enc.pt'),
    'train_gan': ('WhiteBoxAttack/train_gan.py', ['--g_steps', '16', '--ckpt_every', '2'], 'gan.pt'),
    'featureCrafter': ('Crafter_protection/featureCrafter.py',
                       ['--batch_size', '2', '--outer_steps', '4'], 'features_eval_test.pt'),
}


def _start(script, args):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop('CRAFTER_DEBUG', None)
    return subprocess.Popen([sys.executable, str(ROOT / script)] + [str(a) for a in args], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _run(script, args):
    t0 = time.time()
    p = _start(script, args)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out[-3000:]
    return time.time() - t0, out


def _output(stage, params, crafted):
    name = STAGES[stage][2]
    if stage == 'featureCrafter':
        files = list(Path(crafted).glob(f'*/crafter_beta1/{name}'))
        assert len(files) == 1, files
        return files[0]
    return Path(params) / name


def _tensors(stage, file):
    obj = torch.load(file, map_location='cpu', weights_only=True)
    if stage == 'featureCrafter':
        return {'names': obj['names'], 'features': obj['features']}
    assert obj['done'] and 'train' not in obj
    return {f'{m}.{k}': v for m, e in obj['models'].items() for k, v in e['state'].items()}


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if torch.is_tensor(a[k]):
            assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k


@pytest.mark.parametrize('stage', list(STAGES))
def test_kill_nine_then_resume_is_bit_identical(tiny, tmp_path, stage):
    script, extra, _ = STAGES[stage]
    if stage == 'featureCrafter':
        tiny.ensure('amor')     # its enc.pt, gan.pt and amor.pt, read-only here
    else:
        tiny.ensure('data')

    def args(tag):
        a = stage_args(tiny, tiny.params_dir if stage == 'featureCrafter' else tmp_path / tag / 'params',
                       tmp=tmp_path / tag)
        return a + extra + (['--resume', 'true'] if stage != 'featureCrafter' else [])

    wall, _ = _run(script, args('ref'))
    ref = _tensors(stage, _output(stage, tmp_path / 'ref' / 'params', tmp_path / 'ref' / 'crafted'))

    rng = random.Random(f'kill-{stage}')
    hit, logs = 0, []
    marker = (tmp_path / 'killed' / 'params' / STAGES[stage][2] if stage != 'featureCrafter'
              else tmp_path / 'killed' / 'crafted')
    for i in range(KILLS):
        p = _start(script, args('killed'))
        # the first kill comes after the first periodic checkpoint (or crafted batch), so a
        # resume has something to go on from; the others at any point of a run
        while i == 0 and p.poll() is None and not (
                marker.is_file() or list(marker.glob('*/*/batches/*.pt'))):
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.1 if i == 0 else 0.9) * wall)
        if p.poll() is None:
            p.kill()            # SIGKILL: no cleanup, no atexit, possibly mid-write
            hit += 1
        logs.append(p.communicate(timeout=60)[0])
    logs.append(_run(script, args('killed'))[1])
    assert hit >= 1, 'no kill landed while the stage was running'
    # at least one run went on from what a killed one had saved
    again = 'done before, skipped' if stage == 'featureCrafter' else '--resume: continuing'
    assert any(again in log for log in logs), logs[-1][-2000:]
    print(stage, 'kills landed', hit, 'continued', sum(again in log for log in logs))
    got = _tensors(stage, _output(stage, tmp_path / 'killed' / 'params', tmp_path / 'killed' / 'crafted'))
    _same(ref, got)
    # nothing half-written is left: temporary files of the killed runs are gone
    for folder in (tmp_path / 'killed',):
        assert not [f for f in folder.rglob('*.tmp')], list(folder.rglob('*.tmp'))
