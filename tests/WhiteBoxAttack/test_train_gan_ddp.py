"""train_gan under torchrun (2 ranks, gloo, CPU): the WGAN-GP's gradients are
averaged over the ranks by hand (DDP cannot take the penalty's double backward), rank 0 alone
writes, and a run killed after a periodic checkpoint resumes under torchrun to the very weights
of an uninterrupted 2-rank run."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from common import ckpt
from dataset import loader
from tests.robustness.helpers import stage_args

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', '--']
EXTRA = ['--g_steps', '80', '--ckpt_every', '2', '--resume', 'true']


def _env():
    e = {k: v for k, v in os.environ.items() if k not in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK',
                                                          'MASTER_ADDR', 'MASTER_PORT')}
    return dict(e, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')


def _cmd(tiny, tmp_path, tag):
    return [*TORCHRUN, 'WhiteBoxAttack/train_gan.py',
            *stage_args(tiny, tmp_path / tag / 'params', tmp=tmp_path / tag), *EXTRA]


def _tree(pid):
    """pid and all its descendants (from /proc): torchrun starts its workers in new sessions."""
    children = {}
    for d in Path('/proc').iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / 'stat').read_text().rsplit(')', 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        q = todo.pop()
        out.append(q)
        todo += children.get(q, [])
    return out


def _run(cmd):
    p = subprocess.run(cmd, cwd=ROOT, env=_env(), text=True, capture_output=True, timeout=300)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    return p.stdout + p.stderr


def _weights(params):
    obj = torch.load(params / 'gan.pt', map_location='cpu', weights_only=True)
    assert obj['done']
    return {f'{m}.{k}': v for m, e in obj['models'].items() for k, v in e['state'].items()}


def test_train_gan_two_ranks_resume_after_a_kill(tiny, tmp_path):
    tiny.ensure('data')
    out = _run(_cmd(tiny, tmp_path, 'ref'))
    assert 'rank 0 of 2' in out and 'rank 1 of 2' in out
    ref = _weights(tmp_path / 'ref' / 'params')

    marker = tmp_path / 'killed' / 'params' / 'gan.pt'
    p = subprocess.Popen(_cmd(tiny, tmp_path, 'killed'), cwd=ROOT, env=_env(), text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    while p.poll() is None and not marker.exists():
        time.sleep(0.01)
    assert p.poll() is None, 'the run ended before its first periodic checkpoint'
    for pid in _tree(p.pid):               # torchrun and both ranks (their own sessions), no cleanup
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    p.communicate(timeout=60)
    saved = torch.load(marker, map_location='cpu', weights_only=True)
    assert not saved['done'] and 0 < saved['train']['step'] < 80

    out = _run(_cmd(tiny, tmp_path, 'killed'))
    assert '--resume: continuing gan.pt' in out
    got = _weights(tmp_path / 'killed' / 'params')
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    # the checkpoint loads as any other prior does
    cfg = tiny.cfg()
    cfg['params_dir'] = str(tmp_path / 'killed' / 'params')
    G, D = ckpt.load_gan(cfg, loader.load_meta(tiny.data_dir), 'cpu')
    assert torch.isfinite(D(G(torch.randn(2, G.latent_dim)))).all()


CRITIC_SCRIPT = """
import sys, torch
sys.path.insert(0, sys.argv[2])
from common import dist, wgan
from models import Critic
dist.init(torch.device('cpu'))
torch.manual_seed(0)
D = Critic(16, 8)
opt = torch.optim.SGD(D.parameters(), lr=0.1)   # (Adam would blow up the ~0 gradients of biases before a norm)
real, fake = torch.rand(8, 3, 16, 16), torch.rand(8, 3, 16, 16)
torch.rand = lambda *shape, **kw: torch.full(shape, 0.3, **kw)   # the same interpolates split or not
for _ in range(3):
    wgan.critic_step(D, opt, dist.rows(real), dist.rows(fake), 10.0, sync=True)
if dist.is_main():
    torch.save(D.state_dict(), sys.argv[1])
"""


def test_critic_step_with_the_penalty_under_two_ranks_is_the_one_process_step(tmp_path):
    """The hand-averaged gradient (dist.average_grads) after the penalty's double backward gives
    the one-process critic on the whole batch (InstanceNorm: per-sample, so the split is exact)."""
    script = tmp_path / 'critic.py'
    script.write_text(CRITIC_SCRIPT)
    out = {}
    for name, launcher in (('one', [sys.executable]), ('two', TORCHRUN)):
        p = subprocess.run([*launcher, str(script), str(tmp_path / name), str(ROOT)], env=_env(),
                           text=True, capture_output=True, timeout=120)
        assert p.returncode == 0, p.stderr[-2000:]
        out[name] = torch.load(tmp_path / name, weights_only=True)
    for k, v in out['one'].items():
        assert torch.allclose(v, out['two'][k], atol=1e-5), k
