"""Scale-out: torchrun process groups for the training stages, and claim files that let any mix of
processes (torchrun ranks, scheduler array jobs, other machines on a shared folder) split per-item
work such as crafting batches.

torchrun. `init(device)` (called by runtime.start) joins the process group when the script runs
under torchrun (RANK / WORLD_SIZE in the environment): gloo on CPU, nccl on CUDA, one GPU per
local rank. Without torchrun nothing happens and every helper below is the identity, so a plain
`python script.py` computes exactly what it did before. Training stages then shard each global
batch over the ranks (`local`), wrap the model in DistributedDataParallel (`wrap`), and only rank
0 writes checkpoints and reports (`is_main`, `barrier`).

Claims. `claim(path)` creates `path` with O_CREAT | O_EXCL (atomic on a local or NFSv3+ disk)
holding its owner (host, pid, rank, time, a random token). A held claim is refreshed by a
heartbeat thread (its mtime) while the work runs. A claim is taken over when its owner is dead
(same host, pid gone, or this very process from an earlier interrupted call) or when its heartbeat
is older than `timeout_s` (another host died). A takeover first creates `path.takeover.<token>`
with O_EXCL, so of several processes that find the same stale claim only one takes it.
"""
import atexit
import contextlib
import json
import os
import secrets
import socket
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import torch

from common import io

# ---- torchrun ------------------------------------------------------------------------------


def launched():
    """True under torchrun (or any launcher that sets RANK and WORLD_SIZE) with more than one
    process."""
    return 'RANK' in os.environ and int(os.environ.get('WORLD_SIZE', '1')) > 1


def initialized():
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def init(device):
    """Join torchrun's process group (gloo on CPU, nccl on CUDA); returns the device this rank
    uses (cuda:LOCAL_RANK on CUDA). A no-op without torchrun."""
    if not launched() or initialized():
        return device
    if device.type == 'cuda':
        device = torch.device('cuda', int(os.environ.get('LOCAL_RANK', '0')))
        torch.cuda.set_device(device)
        backend = 'nccl'
    else:
        backend = 'gloo'
    torch.distributed.init_process_group(backend)
    # leave the group before the interpreter tears down, all ranks together: a rank that tears
    # down its gloo group while another is still writing (rank 0 saving) can abort at exit
    # ("terminate called without an active exception": 2 of 30 two-rank runs of the test's
    # FIT_SCRIPT without the barrier), and torchrun then reports the finished job as failed
    atexit.register(_leave)
    previous_hook = sys.excepthook

    def crashed(*exc):   # a rank that dies of an exception must not wait for the others
        _STATE['crashed'] = True
        previous_hook(*exc)
    sys.excepthook = crashed
    return device


_STATE = {'crashed': False}
LEAVE_TIMEOUT_S = 600   # how long a finished rank waits at exit for the others (gloo only;
#                         a rank that dies instead gets torchrun's SIGTERM, so no real wait)


def _leave():
    if not initialized():
        return
    if not _STATE['crashed'] and torch.distributed.get_backend() == 'gloo':
        try:
            torch.distributed.monitored_barrier(timeout=timedelta(seconds=LEAVE_TIMEOUT_S))
        except RuntimeError as e:   # a rank that never came: leave anyway, say why
            print(f'dist: leaving without rank(s) that did not reach the end: {e}',
                  file=sys.stderr)
    torch.distributed.destroy_process_group()


def rank():
    if initialized():
        return torch.distributed.get_rank()
    return int(os.environ.get('RANK', '0')) if launched() else 0


def world():
    if initialized():
        return torch.distributed.get_world_size()
    return int(os.environ.get('WORLD_SIZE', '1')) if launched() else 1


def is_main():
    """The process that writes checkpoints, reports and figures (rank 0; always true alone)."""
    return rank() == 0


def barrier():
    if initialized():
        torch.distributed.barrier()


def wrap(model, device):
    """DistributedDataParallel around `model` inside a process group; `model` itself otherwise."""
    if not initialized():
        return model
    from torch.nn.parallel import DistributedDataParallel
    ids = [device.index] if device.type == 'cuda' else None
    return DistributedDataParallel(model, device_ids=ids)


def sync(model):
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank: DDP broadcasts them
    before each forward, so after the last one each rank keeps its own. Call after training."""
    if initialized():
        for b in model.buffers():
            torch.distributed.broadcast(b.data, 0)


def local(batch):
    """This rank's share of a global batch of indices (ranks take every world()-th element, as
    DistributedSampler does): the global batch, split. Alone: the batch itself."""
    w = world()
    return batch if w == 1 else batch[rank()::w]


def rows(x):
    """This rank's rows of a global batch tensor (the same split as `local`); alone: x itself."""
    w = world()
    return x if w == 1 else x[rank()::w]


def average_grads(*models):
    """Mean gradient over the ranks by hand (all_reduce of every .grad, divided by world()): what
    DistributedDataParallel does, but also after a double backward (the WGAN-GP penalty takes
    autograd.grad with create_graph, which DDP does not support). Call between backward() and
    step(). Alone: nothing."""
    if not initialized():
        return
    for m in models:
        for p in m.parameters():
            if p.grad is not None:
                torch.distributed.all_reduce(p.grad)
                p.grad.div_(world())


def broadcast_params(*models):
    """Rank 0's parameters and buffers on every rank (a common start); alone: nothing."""
    if initialized():
        for m in models:
            for t in list(m.parameters()) + list(m.buffers()):
                torch.distributed.broadcast(t.data, 0)


def mean(value):
    """The mean of a float over the ranks (itself alone)."""
    if not initialized():
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    torch.distributed.all_reduce(t)
    return t.item() / world()


def say(msg):
    """Print one line in a single write: ranks (or workers) sharing a stdout pipe then never splice
    two messages onto one line, as print's separate write of the newline allows."""
    sys.stdout.write(f'{msg}\n')
    sys.stdout.flush()


# ---- claims --------------------------------------------------------------------------------

HOST = socket.gethostname()


def owner():
    """'host:pid' of this process (in claim files and logs)."""
    return f'{HOST}:{os.getpid()}'


def _read(path):
    try:
        info = json.loads(Path(path).read_text())
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return None        # gone, or being written this instant


def _age(path):
    try:
        return time.time() - os.stat(path).st_mtime
    except OSError:
        return 0.0


def why_stale(path, info, timeout_s):
    """Why the claim at `path` (content `info`) may be taken over, or None while its owner lives."""
    if info and info.get('host') == HOST and isinstance(info.get('pid'), int):
        if info['pid'] == os.getpid():
            return 'left by this process'
        if not io._pid_alive(info['pid']):
            return f"owner {info['host']}:{info['pid']} is dead"
    age = _age(path)
    if age > timeout_s:
        return f'no heartbeat for {age:.0f} s (> claim_timeout_s {timeout_s:g})'
    return None


class Claim:
    """A claim this process holds (see `claim`)."""

    def __init__(self, path, token, previous=None, reason=None):
        self.path, self.token, self.previous, self.reason = Path(path), token, previous, reason

    def mine(self):
        info = _read(self.path)
        return bool(info) and info.get('token') == self.token

    @contextlib.contextmanager
    def heartbeat(self, every_s):
        """Refresh the claim's mtime every `every_s` seconds while the block runs."""
        stop = threading.Event()

        def beat():
            while not stop.wait(every_s):
                with contextlib.suppress(OSError):
                    os.utime(self.path)
        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()

    def mark_failed(self):
        """Keep the claim, marked failed: others in this run skip it; a rerun takes it over."""
        if self.mine():
            io.write_text(self.path, json.dumps({**_read(self.path), 'failed': True}) + '\n')

    def release(self):
        """Remove the claim (if still ours) and the takeover markers of its earlier owners."""
        if self.mine():
            with contextlib.suppress(OSError):
                os.remove(self.path)
        for marker in self.path.parent.glob(self.path.name + '.takeover.*'):
            with contextlib.suppress(OSError):
                os.remove(marker)


def claim(path, timeout_s, take_failed=True):
    """Try to claim `path`: a Claim, or the reason it is not ours ('held' by a live owner,
    'failed' by another process of this run when not take_failed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    info = dict(host=HOST, pid=os.getpid(), rank=rank(), time=time.time(), token=token)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, 'w') as f:
            f.write(json.dumps(info) + '\n')
        return Claim(path, token)
    old = _read(path)
    if old is None:
        if not path.exists():
            return claim(path, timeout_s, take_failed)   # released meanwhile: try again
        old = {}
    if old.get('failed') and not take_failed:
        return 'failed'
    reason = 'failed before' if old.get('failed') else why_stale(path, old, timeout_s)
    if reason is None:
        return 'held'
    marker = Path(f"{path}.takeover.{old.get('token', 'unreadable')}")
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    except FileExistsError:
        return 'held'                                   # another process is taking it over
    io.write_text(path, json.dumps(info) + '\n')
    prev = f"{old.get('host', '?')}:{old.get('pid', '?')}"
    return Claim(path, token, previous=prev, reason=reason)


def shard_order(n, r, w):
    """The order in which rank r of w visits n items: its own (r, r + w, ...), then the rest
    starting after r (helping the others from where they are least likely to be)."""
    own = list(range(r, n, w))
    rest = [k for k in list(range(r, n)) + list(range(r)) if k % w != r]
    return own + rest
