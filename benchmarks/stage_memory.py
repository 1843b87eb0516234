"""Peak memory of the decoder and Feature2ID stages, before and after chunked encoding.

Before (up to commit d2a802a) `common.train.encode` concatenated per-chunk features
(`torch.cat([Enc(x_b) for b in batches])`: the chunks and their concatenation live at once);
now it writes each chunk into one preallocated tensor. This runs each stage for `--epochs`
in a fresh child process, once with today's `encode` and once with the old one patched in,
and prints the child's peak RSS (ru_maxrss). Checkpoints go to a scratch copy of the params
folder (only the stage's inputs are copied), so `params/` is never touched.

    python benchmarks/stage_memory.py --preset celeba-cpu --data_dir dataset/celeba32 --epochs 1
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = {  # script, module, the params files it reads
    'decoder': ('BlackBoxAttack/trainDecoder.py', 'BlackBoxAttack.trainDecoder', ['enc.pt', 'eval.pkl']),
    'feature2id': ('Feature2ID/f2id_train.py', 'Feature2ID.f2id_train', ['enc.pt']),
}

CHILD = r'''
import resource, sys, json, importlib
sys.path.insert(0, {root!r})
import torch
mod = importlib.import_module({module!r})
if {old!r}:
    from dataset import loader
    def encode(Enc, split, device, batch_size=256, out=None):   # the pre-H7 implementation
        return torch.cat([Enc(split.x(b.to(device))) for b in loader.batches(len(split), batch_size)])
    mod.encode = encode
mod.main({argv!r})
print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
'''


def run(stage, old, args, params):
    script, module, _ = STAGES[stage]
    argv = ['--preset', args.preset, '--data_dir', args.data_dir, '--params_dir', params,
            '--epochs', str(args.epochs), '--device', 'cpu']
    code = CHILD.format(root=str(ROOT), module=module, old=old, argv=argv)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    p = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True, text=True)
    if p.returncode:
        sys.exit(f'error: {script} failed ({"old" if old else "new"} encode):\n{p.stderr[-2000:]}')
    kib = int(p.stdout.rsplit('PEAK_RSS_KIB', 1)[1].split()[0])
    return kib / 1024


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--preset', default='celeba-cpu')
    ap.add_argument('--data_dir', default='dataset/celeba32')
    ap.add_argument('--params_dir', default=None, help='default params/<preset>')
    ap.add_argument('--epochs', type=int, default=1)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--stages', default='decoder,feature2id')
    args = ap.parse_args(argv)
    src = ROOT / (args.params_dir or f'params/{args.preset}')   # an absolute path stays as is
    out = {}
    for stage in args.stages.split(','):
        need = STAGES[stage][2]
        missing = [n for n in need if not (src / n).exists()]
        if missing:
            sys.exit(f'error: {src} lacks {missing}; run the pipeline stages that make them first '
                     f'(make stages PRESET={args.preset})')
        for old in (True, False):
            with tempfile.TemporaryDirectory() as tmp:
                for n in need:
                    shutil.copy(src / n, Path(tmp) / n)
                mib = run(stage, old, args, tmp)
            key = f'{stage}_{"before" if old else "after"}_peak_rss_mib'
            out[key] = round(mib, 1)
            print(f'{stage:>10} {"before (torch.cat)" if old else "after (preallocated)":>22}: '
                  f'peak RSS {mib:.0f} MiB', flush=True)
    print(json.dumps(out))
    return out


if __name__ == '__main__':
    main()
