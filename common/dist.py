"""Scale-out: torchrun helpers (the identity without torchrun: gloo on CPU, nccl on CUDA, one GPU
per local rank; stages split each global batch with `local`, rank 0 alone writes), and claim files
that let any mix of processes (ranks, array jobs, machines sharing a folder) split per-item work."""
import atexit
import contextlib
import json
import os
import socket
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch

from common import io


def launched():
    return 'RANK' in os.environ and int(os.environ.get('WORLD_SIZE', '1')) > 1


def initialized():
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def init(device):
    """Join torchrun's process group; returns this rank's device (cuda:LOCAL_RANK on CUDA)."""
    if not launched() or initialized():
        return device
    if device.type == 'cuda':
        device = torch.device('cuda', int(os.environ.get('LOCAL_RANK', '0')))
        torch.cuda.set_device(device)
    torch.distributed.init_process_group('nccl' if device.type == 'cuda' else 'gloo')
    # leave the group at exit all ranks together: a rank tearing its gloo group down while another
    # still writes (rank 0 saving) can abort ("terminate called without an active exception": 2 of
    # 30 two-rank runs of test_dist's FIT_SCRIPT without it), and torchrun then reports a failure
    atexit.register(_leave)
    return device


LEAVE_TIMEOUT_S = 600   # a finished rank's wait for the others at exit (a dead one gets SIGTERM)


def _leave():
    if not initialized():
        return
    # a rank that died of an exception (sys.last_value: uncaught) must not wait for the others
    if getattr(sys, 'last_value', None) is None and torch.distributed.get_backend() == 'gloo':
        try:
            torch.distributed.monitored_barrier(timeout=timedelta(seconds=LEAVE_TIMEOUT_S))
        except RuntimeError as e:   # a rank that never came: leave anyway, say why
            print(f'dist: leaving without rank(s) that did not reach the end: {e}', file=sys.stderr)
    torch.distributed.destroy_process_group()


def rank():
    return torch.distributed.get_rank() if initialized() else int(os.environ['RANK']) if launched() else 0


def world():
    return torch.distributed.get_world_size() if initialized() else int(os.environ['WORLD_SIZE']) if launched() else 1


def is_main():
    """The process that writes checkpoints, reports and figures."""
    return rank() == 0


def barrier():
    if initialized():
        torch.distributed.barrier()


def wrap(model, device):
    """DistributedDataParallel around `model` inside a process group; `model` itself otherwise."""
    if not initialized():
        return model
    from torch.nn.parallel import DistributedDataParallel
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == 'cuda' else None)


def local(batch):
    """This rank's share of a global batch (or of a tensor's rows): every world()-th element."""
    return batch if world() == 1 else batch[rank()::world()]


rows = local


def sync(model):
    """Rank 0's buffers (BatchNorm statistics) on every rank, which DDP's last forward left apart."""
    broadcast_params(model, params=False)


def broadcast_params(*models, params=True):
    """Rank 0's parameters and buffers on every rank (a common start); alone: nothing."""
    for m in models if initialized() else ():
        for t in (list(m.parameters()) if params else []) + list(m.buffers()):
            torch.distributed.broadcast(t.data, 0)


def average_grads(*models):
    """Mean gradient over the ranks, as DDP does, but also after the WGAN-GP penalty's double
    backward (which DDP does not support). Call between backward() and step()."""
    for p in (p for m in models for p in m.parameters()) if initialized() else ():
        if p.grad is not None:
            torch.distributed.all_reduce(p.grad)
            p.grad.div_(world())


def mean(value):
    """The mean of a float over the ranks (itself alone)."""
    if not initialized():
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    torch.distributed.all_reduce(t)
    return t.item() / world()


def say(msg):
    """Print a line in one write: ranks sharing a pipe then never splice two lines into one."""
    sys.stdout.write(f'{msg}\n')
    sys.stdout.flush()


HOST = socket.gethostname()


def owner():
    return f'{HOST}:{os.getpid()}'


def _holder(path):
    """The claim file's content ({} while it is being written), None once it is gone."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


class Claim:
    """A claim this process holds; `previous` and `reason`: whose it took over, and why."""

    def __init__(self, path, previous=None, reason=None):
        self.path, self.previous, self.reason = Path(path), previous, reason

    def mine(self):
        return _holder(self.path) == {'host': HOST, 'pid': os.getpid()}

    def release(self):
        if self.mine():
            with contextlib.suppress(OSError):
                os.remove(self.path)


def claim(path, timeout_s):
    """Claim `path`: a Claim, or 'held'. The file is created with O_CREAT | O_EXCL (atomic on a
    local or NFSv3+ disk) holding its owner's host and pid; it is taken over at once when that is
    a dead process of this host (or this one, interrupted earlier), and `timeout_s` after it was
    written when the owner is on another host. No heartbeat, no lock on a takeover: the work is
    deterministic and written atomically, so a rare double takeover only duplicates it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = json.dumps({'host': HOST, 'pid': os.getpid()}) + '\n'
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        old = _holder(path)
        if old is None:
            return claim(path, timeout_s)                # released meanwhile: try again
        host, pid, age = old.get('host'), old.get('pid'), 0.0
        with contextlib.suppress(OSError):
            age = time.time() - os.stat(path).st_mtime
        if host == HOST and isinstance(pid, int):
            reason = 'left by this process' if pid == os.getpid() else \
                None if io._pid_alive(pid) else f'owner {HOST}:{pid} is dead'
        else:
            reason = f'written {age:.0f} s ago (claim_timeout_s {timeout_s:g})' if age > timeout_s else None
        if reason is None:
            return 'held'
        io.write_text(path, me)
        return Claim(path, f'{host}:{pid}', reason)
    with os.fdopen(fd, 'w') as f:
        f.write(me)
    return Claim(path)


def shard_order(n, r, w):
    """Rank r of w visits its own items (r, r + w, ...) first, then the others' from r on."""
    return list(range(r, n, w)) + [k for k in list(range(r, n)) + list(range(r)) if k % w != r]
