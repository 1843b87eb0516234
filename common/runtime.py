"""Device, seeding, speed switches and the wall-time / peak-memory report every stage prints."""
import contextlib
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


# ---- the GPU switches (--amp, --channels_last, --compile): which stage honours which ------------
# A switch set on the command line of a stage that does not honour it stops the stage before it
# does anything, with the reason below (never a silent ignore). A stage named here honours every
# switch it has no reason for; a stage not named here honours none ("not wired in <stage>").
# How they are honoured: channels_last converts every conv net the stage loads (common/ckpt.py
# loaders) or builds to NHWC; amp is bf16 autocast around the forward passes (CUDA only: on a
# CPU autocast is a no-op, as its help says); compile wraps the trained models in torch.compile.
SWITCHES = ('amp', 'channels_last', 'compile')
_HVP = ('the hypergradient takes Hessian-vector products through Enc(G(z)) (double backward, '
        'create_graph), which torch.compile does not support')
_BF16_HVP = ('bf16 in the conjugate-gradient solve of the hypergradient: its residuals and damping '
             '(0.1) were measured in fp32, and bf16 (8-bit mantissa) would change the protection')
_NOT_WIRED = 'not wired in this stage (it is not one of the heavy GPU paths)'
REFUSES = {
    'trainTargetNet': {}, 'evalTrain': {}, 'train_gan': {},
    'featureCrafter': {'amp': _BF16_HVP, 'compile': _HVP},
    'zCrafter': {'amp': _BF16_HVP, 'compile': _HVP},
    'benchmark crafting': {'amp': _BF16_HVP, 'compile': _HVP},
    'attacker': {'compile': 'the inversion differentiates Enc(G(z)) w.r.t. z with a batch shape that '
                            'changes at the last batch (a recompile each time); not wired'},
    'evaluate': {'compile': 'its attacks call the attacker (see attacker), which refuses it'},
    'adaptiveUpdateG': {'amp': 'the adapted G is trained through the attacker\'s inner steps; bf16 '
                               'there is not validated', 'compile': _HVP.replace(
                                   'the hypergradient takes', 'adapting G through the attack takes')},
    'trainDecoder': {'amp': _NOT_WIRED, 'compile': _NOT_WIRED},
    'adaptiveTrainDecoder': {'amp': _NOT_WIRED, 'compile': _NOT_WIRED},
}


def check_switches(cfg, title):
    """Stop with the reason when a GPU switch is on and `title` does not honour it."""
    from common.config import ConfigError
    refuses = REFUSES.get(title, {k: _NOT_WIRED for k in SWITCHES})
    for key in SWITCHES:
        if cfg.get(key) and key in refuses:
            raise ConfigError(f'--{key} is not supported by {title}: {refuses[key]}; run it without --{key}')


def honours(title, key):
    return key not in REFUSES.get(title, {k: _NOT_WIRED for k in SWITCHES})


def memory_format(model, cfg):
    """channels_last (NHWC) weights when --channels_last is on: the convs then run in NHWC."""
    if (cfg.get('channels_last') if isinstance(cfg, dict) else getattr(cfg, 'channels_last', False)):
        model = model.to(memory_format=torch.channels_last)
    return model


def start(cfg, title):
    """Print the resolved config, seed everything, return the device and a stage clock.

    A GPU switch the stage does not honour (REFUSES) stops it here, before anything is written.
    """
    check_switches(cfg, title)
    cfg.show(title)
    seed_everything(cfg.seed)
    device = dist.init(resolve_device(cfg.device))    # under torchrun: join the process group
    if device.type == 'cuda':
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


def autocast(cfg, device):
    """bf16 autocast on CUDA when --amp is on; a no-op elsewhere."""
    if cfg.get('amp') and device.type == 'cuda':
        return torch.autocast('cuda', dtype=torch.bfloat16)
    return contextlib.nullcontext()


def speed_up(model, cfg, device):
    """Move to the device and apply the GPU switches. Returns the module to call.

    Keep a reference to the original module for saving: a compiled wrapper's state_dict keys
    differ.
    """
    model = model.to(device)
    if cfg.get('channels_last'):
        model = model.to(memory_format=torch.channels_last)
    if cfg.get('compile'):
        return torch.compile(model)
    return model


def as_input(x, cfg):
    if cfg.get('channels_last') and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


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
