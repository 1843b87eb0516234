"""The GPU check (issue 15): a few steps of every heavy stage at paper settings, one after another
as a user runs them, with each stage's wall time, images per second and peak memory.

Paper settings: 64 px images, batch 128, the scripts' default (paper) widths and depths, on
synthetic faces made here (dataset/make_synthetic.py --img_size 64, small counts), with the
step counts cut to a few. Then benchmarks/crafting.py times crafting per outer step for the
paper's solver (reference) and ours. Everything goes under one scratch folder (--root).

Throughput is the images through a stage's main loop (steps x batch, or epochs x split) over its
whole wall time (start-up, loading and scoring included), so it is a floor. Peak memory is the
stage's own report: peak CUDA allocation (peak_cuda_mib) on a GPU, the process's peak RSS always.

    bash benchmarks/gpu_check.sh              # one GPU, <= 8 minutes
    bash benchmarks/gpu_check.sh --smoke      # CPU, about 3 minutes (the tiny preset)
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
B = 128                      # the paper's batch


def stages(smoke):
    """(name, script, extra args, images through its main loop or None = from the split sizes)."""
    if smoke:   # the tiny preset's models and counts: only that every stage runs
        return [
            ('trainTargetNet', 'Crafter_protection/trainTargetNet.py', [], ('private', 1)),
            ('evalTrain', 'Image2ID/evalTrain.py', ['--epochs', '1'], ('eval_train', 1)),
            ('train_gan', 'WhiteBoxAttack/train_gan.py', ['--g_steps', '4'], 4 * 2 * 16),
            ('trainAmor', 'WhiteBoxAttack/trainAmor.py', [], 4 * 16),
            ('featureCrafter', 'Crafter_protection/featureCrafter.py', ['--outer_steps', '2', '--n_images', '8'], 2 * 8),
            ('zCrafter', 'Crafter_protection/zCrafter.py', ['--outer_steps', '2', '--n_images', '8'], 2 * 8),
            ('attacker', 'WhiteBoxAttack/attacker.py', ['--n_per_id', '1'], None),
            ('trainDecoder', 'BlackBoxAttack/trainDecoder.py', [], ('public', 1)),
            ('f2id_train', 'Feature2ID/f2id_train.py', [], ('eval_train', 1)),
            ('attacker_id', 'Image2ID/evalTrain.py', ['--split', 'public', '--epochs', '1'], ('public', 1)),
            ('adaptiveUpdateG', 'WhiteBoxAttack/adaptiveUpdateG.py', ['--protection', 'none', '--epochs', '1'], 16),
            ('evaluate', 'evaluate.py', ['--protections', 'none,crafter_beta1', '--n_per_id', '1',
                                          '--attacks', 'whitebox,whitebox_amortized,blackbox,feature2id'], None),
        ]
    few = ['--batch_size', str(B)]
    return [
        ('trainTargetNet', 'Crafter_protection/trainTargetNet.py', few + ['--epochs', '2'], ('private', 2)),
        ('evalTrain', 'Image2ID/evalTrain.py', few + ['--epochs', '2'], ('eval_train', 2)),
        ('train_gan', 'WhiteBoxAttack/train_gan.py', few + ['--g_steps', '10', '--ckpt_every', '10'], 10 * 6 * B),
        ('trainAmor', 'WhiteBoxAttack/trainAmor.py', few + ['--steps', '30', '--ckpt_every', '30',
                                                            '--eval_images', '128', '--eval_steps', '10'], 30 * B),
        ('featureCrafter', 'Crafter_protection/featureCrafter.py',
         few + ['--outer_steps', '3', '--n_per_id', '3', '--eps_steps', '20', '--first_inner_steps', '20'], 3 * 120),
        ('zCrafter', 'Crafter_protection/zCrafter.py',
         few + ['--outer_steps', '3', '--n_per_id', '3', '--eps_steps', '20', '--first_inner_steps', '20'], 3 * 120),
        ('attacker', 'WhiteBoxAttack/attacker.py', few + ['--n_per_id', '3', '--steps', '20', '--amor_steps', '10',
                                                          '--restarts', '1'], 120 * 30),
        ('trainDecoder', 'BlackBoxAttack/trainDecoder.py', few + ['--epochs', '3'], ('public', 3)),
        ('f2id_train', 'Feature2ID/f2id_train.py', few + ['--epochs', '3'], ('eval_train', 3)),
        # the attacker's identity model (public identities), which adaptiveUpdateG selects by
        ('attacker_id', 'Image2ID/evalTrain.py', few + ['--split', 'public', '--epochs', '2'], ('public', 2)),
        ('adaptiveUpdateG', 'WhiteBoxAttack/adaptiveUpdateG.py', ['--protection', 'none', '--epochs', '1',
                                                                  '--n_images', '128', '--amor_steps', '10'], 96),
        ('evaluate', 'evaluate.py', few + ['--protections', 'none,crafter_beta1', '--n_per_id', '3', '--steps', '20',
                                           '--amor_steps', '10', '--restarts', '1', '--eps_steps', '20',
                                           '--attacks', 'whitebox,whitebox_amortized,blackbox,feature2id'], None),
    ]


def split_sizes(data_dir):
    sys.path.insert(0, str(ROOT))
    from dataset import loader
    return {k: v['images'] for k, v in loader.load_meta(data_dir)['counts'].items()}


def report(out):
    """The numbers of a stage's closing line 'X done: k=v, ...'."""
    line = [ln for ln in out.splitlines() if ' done: ' in ln and 'wall_s=' in ln][-1]
    return {k: float(v) for k, v in re.findall(r'(wall_s|peak_rss_mib|peak_cuda_mib)=([\d.]+)', line)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--root', required=True, help='scratch folder (data, params, results)')
    ap.add_argument('--smoke', action='store_true', help='the tiny preset on the CPU')
    ap.add_argument('--device', default='auto')
    a = ap.parse_args()
    root = Path(a.root).resolve()
    data = root / 'data'
    common = ['--data_dir', data, '--params_dir', root / 'params', '--results_dir', root / 'results',
              '--crafted_dir', root / 'crafted', '--device', a.device]
    if a.smoke:
        common += ['--preset', 'tiny']
    sizes = split_sizes(data)
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    rows = []
    print(f"{'stage':<16}{'wall s':>8}{'img/s':>9}{'peak CUDA MiB':>15}{'peak RSS MiB':>14}", flush=True)
    for name, script, extra, work in stages(a.smoke):
        cmd = [sys.executable, str(ROOT / script), *map(str, common), *extra]
        t0 = time.time()
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            print(f'{name}: FAILED (exit {r.returncode}): {" ".join(cmd)}\n{r.stdout[-2000:]}{r.stderr[-2000:]}')
            sys.exit(1)
        rep = report(r.stdout)
        wall = rep.get('wall_s', time.time() - t0)
        if isinstance(work, tuple):
            work = sizes.get(work[0], 0) * work[1] or None
        ips = f'{work / wall:.1f}' if work else '-'
        cuda = f"{rep['peak_cuda_mib']:.0f}" if 'peak_cuda_mib' in rep else '-'
        print(f"{name:<16}{wall:>8.1f}{ips:>9}{cuda:>15}{rep.get('peak_rss_mib', 0):>14.0f}", flush=True)
        rows.append({**rep, "stage": name, "wall_s": wall, "images_per_s": work / wall if work else None})
    (root / 'gpu_check.json').write_text(json.dumps(rows, indent=1) + '\n')
    print(f'written: {root / "gpu_check.json"}')


if __name__ == '__main__':
    main()
