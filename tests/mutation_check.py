"""Mutation check for Crafter's tests (not collected by pytest: run it by hand).

Applies each of five mutations that stop Crafter from protecting to a temporary copy of the
repository and runs Crafter's tests there; every mutation must make them fail, and the unmutated
copy must pass.

    .venv/bin/python tests/mutation_check.py            # ~5-10 min on 1 CPU thread

The first mutation (drop the privacy gradient) is `F.grad = dL_dF` of the issue; the outer step's
gradient is now assembled in featureCrafter.outer_gradient, so it returns dL_dF there instead.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXCLUDE = {'.venv', 'params', 'results', 'dataset', 'Crafter_result', '.git', '__pycache__',
           '.pytest_cache'}
TESTS = ['tests/Crafter_protection/test_protection.py', 'tests/Crafter_protection/test_implicit.py']

# name, file, text, replacement
MUTATIONS = [
    ('drop the privacy gradient (F.grad = dL_dF)', 'Crafter_protection/featureCrafter.py',
     'return grad_F, L_p, L_u, n', 'return dL_dF, L_p, L_u, n'),
    ('gradient ascent (F.grad = -grad_F)', 'Crafter_protection/featureCrafter.py',
     'F.grad = grad_F', 'F.grad = -grad_F'),
    ("swap the critic's real and fake sides", 'Crafter_protection/crafting.py',
     'wgan.critic_step(self.D, self.opt, prior[j], recon[i], self.gp_weight)',
     'wgan.critic_step(self.D, self.opt, recon[i], prior[j], self.gp_weight)'),
    ('zero the implicit term', 'Crafter_protection/implicit.py',
     'return dL_dF - cross, n', 'return dL_dF - 0 * cross, n'),
    ('flip the implicit term', 'Crafter_protection/implicit.py',
     'return dL_dF - cross, n', 'return dL_dF + cross, n'),
]


def copy_tree(dst):
    def ignore(folder, names):
        top = Path(folder) == ROOT
        return [n for n in names if n in EXCLUDE - {'dataset'} or (top and n == 'dataset')]
    shutil.copytree(ROOT, dst, ignore=ignore, symlinks=True)
    # dataset/ holds code as well as data: copy only its code
    (Path(dst) / 'dataset').mkdir()
    for src in (ROOT / 'dataset').glob('*.py'):
        shutil.copy2(src, Path(dst) / 'dataset' / src.name)


def run_tests(tree):
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '1'))
    t = time.time()
    p = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', *TESTS],
                       cwd=tree, env=env, capture_output=True, text=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    failed = sorted({ln.split('::')[-1].split(' ')[0] for ln in lines if ln.startswith('FAILED')})
    summary = (lines[-1] if lines else p.stderr[-300:]) + (f" [{', '.join(failed)}]" if failed else '')
    return p.returncode, summary, time.time() - t


def main():
    results = []
    with tempfile.TemporaryDirectory(prefix='mutation_check_') as tmp:
        for name, file, old, new in [('unmutated', None, None, None)] + MUTATIONS:
            tree = Path(tmp) / f'tree{len(results)}'
            copy_tree(tree)
            if file:
                path = tree / file
                text = path.read_text()
                if text.count(old) != 1:
                    raise SystemExit(f'mutation {name!r}: expected one {old!r} in {file}, '
                                     f'found {text.count(old)}')
                path.write_text(text.replace(old, new))
            rc, last, wall = run_tests(tree)
            ok = (rc == 0) if file is None else (rc != 0)
            results.append(ok)
            print(f"{'OK  ' if ok else 'BAD '} {name:<42} tests {'pass' if rc == 0 else 'FAIL'} "
                  f'({wall:.0f} s): {last}', flush=True)
            shutil.rmtree(tree)
    print('mutation check:', 'every mutation is caught' if all(results) else 'NOT all caught')
    return 0 if all(results) else 1


if __name__ == '__main__':
    sys.exit(main())
