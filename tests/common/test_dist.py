"""common/dist.py without torchrun: the helpers are the identity, and claim files hand each item
to one process, taking over only dead owners (this host) or old claims (other hosts)."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest
import torch

from common import dist


def test_alone_everything_is_the_identity():
    assert not dist.launched() and dist.rank() == 0 and dist.world() == 1 and dist.is_main()
    net = torch.nn.Linear(2, 2)
    assert dist.wrap(net, torch.device('cpu')) is net
    b = torch.arange(7)
    assert torch.equal(dist.local(b), b) and dist.mean(1.5) == 1.5


def test_say_writes_each_line_in_one_write(monkeypatch):
    """Ranks share torchrun's stdout: a line in two writes (text, then newline) can be spliced with
    another rank's line, which once hid a crafted batch from test_sharded's count."""
    writes = []

    class Out:
        def write(self, s):
            writes.append(s)

        def flush(self):
            pass

    monkeypatch.setattr('sys.stdout', Out())
    dist.say('batch 3: eps-PII 0.1 -> 0.2')
    assert writes == ['batch 3: eps-PII 0.1 -> 0.2\n']


def test_shard_order_visits_every_item_once_own_first():
    for n, w in ((10, 3), (4, 2), (1, 2), (5, 1)):
        orders = [dist.shard_order(n, r, w) for r in range(w)]
        for r, order in enumerate(orders):
            assert sorted(order) == list(range(n))
            own = [k for k in range(n) if k % w == r]
            assert order[:len(own)] == own


def test_a_live_claim_is_held_a_released_one_is_free(tmp_path):
    path = tmp_path / 'b_0000.claim'
    path.write_text(json.dumps(dict(host=socket.gethostname(), pid=os.getppid())))   # alive, here
    assert dist.claim(path, timeout_s=60) == 'held'
    path.unlink()
    got = dist.claim(path, timeout_s=60)
    assert isinstance(got, dist.Claim) and got.previous is None and got.mine()
    got.release()
    assert not path.exists()


def test_dead_silent_and_own_claims_are_taken_over(tmp_path):
    dead = tmp_path / 'dead.claim'
    p = subprocess.Popen(['true'])
    p.wait()                                             # a pid that no longer runs
    dead.write_text(json.dumps(dict(host=socket.gethostname(), pid=p.pid)))
    got = dist.claim(dead, timeout_s=3600)
    assert isinstance(got, dist.Claim) and 'dead' in got.reason and got.mine()
    assert dist.claim(dead, timeout_s=3600).reason == 'left by this process'
    silent = tmp_path / 'silent.claim'
    silent.write_text(json.dumps(dict(host='elsewhere', pid=1)))
    assert dist.claim(silent, timeout_s=30) == 'held'    # another host, written just now
    old = time.time() - 100
    os.utime(silent, (old, old))
    got = dist.claim(silent, timeout_s=30)
    assert isinstance(got, dist.Claim) and 'written 100 s ago' in got.reason and got.mine()
    assert got.previous == 'elsewhere:1'
    got.release()
    assert not silent.exists()


def test_a_claim_being_written_is_held_and_another_owners_is_not_released(tmp_path):
    path = tmp_path / 'w.claim'
    path.write_text('')                                  # created, content not written yet
    assert dist.claim(path, timeout_s=60) == 'held'
    got = dist.Claim(path)
    got.release()                                        # not ours: left alone
    assert path.exists()


# ---- a training stage under torchrun (2 ranks, gloo, CPU) ----------------------------------

def _f2id(tiny, tmp_path, name, launcher):
    """Feature2ID trained into its own params folder (a copy of the tiny enc.pt)."""
    import shutil
    from pathlib import Path
    params = tmp_path / name
    params.mkdir()
    shutil.copy(Path(tiny.params_dir) / 'enc.pt', params / 'enc.pt')
    args = [a if a != tiny.params_dir else str(params) for a in tiny.args]
    env = {k: v for k, v in os.environ.items() if k not in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK')}
    env.update(OMP_NUM_THREADS='1')
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([*launcher, 'Feature2ID/f2id_train.py', *args], cwd=root, env=env,
                          text=True, capture_output=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    report = json.loads((params / 'f2id_report.json').read_text())
    return args, params, report, proc.stdout + proc.stderr


def test_feature2id_under_two_torchrun_ranks_loads_and_scores_like_one_process(tiny, tmp_path):
    import sys
    from pathlib import Path
    from Feature2ID import f2id_test
    one = tiny.ensure('f2id')                            # the same stage in one process
    p1 = Path(tiny.params_dir)
    args, p2, two, out = _f2id(tiny, tmp_path, 'ddp', [sys.executable, '-m', 'torch.distributed.run',
                                                        '--standalone', '--nproc_per_node', '2', '--'])
    assert 'rank 1 of 2' in out and 'rank 0 of 2' in out
    # one checkpoint, written once (rank 0), loadable as any other, scoring what it reported
    scored = f2id_test.main(args)
    assert abs(scored['top1'] - two['top1']) < 1e-9 and abs(scored['top5'] - two['top5']) < 1e-9
    s1 = torch.load(p1 / 'f2id.pt', weights_only=True)
    s2 = torch.load(p2 / 'f2id.pt', weights_only=True)
    assert s1.keys() == s2.keys() and s2['metrics']['top1'] == two['top1']
    w1, w2 = s1['models']['f2id']['state'], s2['models']['f2id']['state']
    assert w1.keys() == w2.keys() and all(w1[k].shape == w2[k].shape for k in w1)
    # per-rank BatchNorm statistics make it differ a little from the one-process run, not much
    moved = [k for k in w1 if w1[k].is_floating_point() and not torch.equal(w1[k], w2[k])]
    assert moved, 'two ranks gave bit-identical weights: was the batch really split?'
    assert abs(one['top1'] - two['top1']) <= 0.15 and abs(one['top5'] - two['top5']) <= 0.15


FIT_SCRIPT = """
import sys, torch
sys.path.insert(0, sys.argv[2])
from common import dist, train
dist.init(torch.device('cpu'))
torch.manual_seed(0)
x, y = torch.randn(96, 5), torch.randint(0, 3, (96,))
net = torch.nn.Linear(5, 3)
opt = torch.optim.SGD(net.parameters(), lr=0.5)
hist = train.fit(net, opt, x, y, torch.nn.functional.cross_entropy, 3, 16,
                 torch.Generator().manual_seed(1), 'fit', {})
if dist.is_main():
    torch.save({'w': net.state_dict(), 'hist': hist}, sys.argv[1])
"""


def test_fit_under_two_ranks_follows_the_one_process_trajectory(tmp_path):
    """Without batch statistics, DDP on the split global batches is the same gradient descent."""
    import sys
    from pathlib import Path
    root = str(Path(__file__).resolve().parents[2])
    script = tmp_path / 'fit.py'
    script.write_text(FIT_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK')}
    env.update(OMP_NUM_THREADS='1')
    runs = {}
    for name, launcher in (('one', [sys.executable]), ('two', [
            sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
            '--'])):
        proc = subprocess.run([*launcher, str(script), str(tmp_path / name), root], env=env,
                              text=True, capture_output=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs[name] = torch.load(tmp_path / name, weights_only=True)
    for k, v in runs['one']['w'].items():
        assert torch.allclose(v, runs['two']['w'][k], atol=1e-5), k
    assert runs['one']['hist']['loss'] == pytest.approx(runs['two']['hist']['loss'], abs=1e-5)


def _one_rank_group(tmp_path):
    torch.distributed.init_process_group('gloo', init_method=f'file://{tmp_path / "store"}',
                                         rank=0, world_size=1)


@pytest.mark.parametrize('crashed', [False, True])
def test_leaving_waits_for_every_rank_unless_this_one_crashed(tmp_path, monkeypatch, crashed):
    """At exit a finished rank meets the others at a barrier before it tears its gloo group down
    (without it, 2 of 30 two-rank runs aborted at exit); one that died of an exception does not
    wait for ranks that will never come."""
    calls = []
    real = torch.distributed.monitored_barrier
    monkeypatch.setattr(torch.distributed, 'monitored_barrier',
                        lambda **kw: (calls.append(kw), real(**kw)))
    if crashed:                                          # what an uncaught exception leaves
        monkeypatch.setattr(sys, 'last_value', RuntimeError('boom'), raising=False)
    else:
        monkeypatch.delattr(sys, 'last_value', raising=False)
    _one_rank_group(tmp_path)
    try:
        dist._leave()
    finally:
        if dist.initialized():
            torch.distributed.destroy_process_group()
            pytest.fail('_leave left the process group alive')
    assert len(calls) == (0 if crashed else 1)
    if calls:
        assert calls[0]['timeout'].total_seconds() == dist.LEAVE_TIMEOUT_S
