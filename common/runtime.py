"""Device, seeding, and the wall-time / peak-memory report every stage prints."""
import json
import random
import resource
import time

import numpy as np
import torch

from common import dist, io


def resolve_device(name='auto'):
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if name.startswith('cuda') and not torch.cuda.is_available():
        raise SystemExit(f'error: --device {name} but CUDA is not available here; use --device cpu')
    return torch.device(name)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def start(cfg, title):
    """Print the resolved config, seed everything, return the device and a stage clock."""
    cfg.show(title)
    seed_everything(cfg.seed)
    device = dist.init(resolve_device(cfg.device))    # under torchrun: join the process group
    if device.type == 'cuda':       # the fastest conv algorithms, TF32 matmuls (Ampere and later)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    ranks = f'  rank {dist.rank()} of {dist.world()}' if dist.world() > 1 else ''
    print(f'device: {device}  threads: {torch.get_num_threads()}{ranks}', flush=True)
    return device, StageClock(device)


def run_tag(cfg):
    """A name for this run's outputs: params -> 'default', params/demo -> 'demo'."""
    from pathlib import Path
    parts = Path(cfg.params_dir).parts
    tag = '_'.join(parts[1:]) if parts and parts[0] == 'params' else '_'.join(parts[-2:])
    return tag or 'default'


class StageClock:
    """Wall time and peak memory of a stage, for the closing lines and the stage's JSON."""

    def __init__(self, device):
        self.t0 = time.time()
        self.device = device
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)

    def summary(self):
        out = {'wall_s': round(time.time() - self.t0, 2),
               'peak_rss_mib': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
        if self.device.type == 'cuda':
            out['peak_cuda_mib'] = round(torch.cuda.max_memory_allocated(self.device) / 2 ** 20, 1)
        return out

    def finish(self, title, path=None, **metrics):
        """Print 'title: wall .. s, peak .. MiB, metrics' and write them as JSON to `path`."""
        report = {**metrics, **self.summary()}
        print(f'{title} done: ' + ', '.join(f'{k}={_fmt(v)}' for k, v in report.items()), flush=True)
        if path is not None and dist.is_main():        # under torchrun rank 0 writes reports
            io.write_text(path, json.dumps(report, indent=1) + '\n')
        return report


def _fmt(v):
    return f'{v:.4g}' if isinstance(v, float) else str(v)
