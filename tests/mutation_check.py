"""Mutation check for the protections' tests (not collected by pytest: run it by hand).

Applies each mutation that stops a protection from protecting (five for Crafter, the privacy term
of each baseline defence) to a temporary copy of the repository and runs that protection's tests
there; every mutation must make them fail, and the unmutated copy must pass them all.

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
ID_TESTS = ['tests/Crafter_protection/test_idCrafter.py']
DEFENCE_TESTS = {'Baselines/nopeek.py': ['tests/Baselines/test_nopeek.py'],
                 'Baselines/shredder.py': ['tests/Baselines/test_shredder.py'],
                 'Baselines/disco.py': ['tests/Baselines/test_disco.py']}

# name, file, text, replacement[, tests] (default: DEFENCE_TESTS of the file, else TESTS)
MUTATIONS = [
    ('drop the privacy gradient (F.grad = dL_dF)', 'Crafter_protection/featureCrafter.py',
     'return grad_F, L_p, L_u, L_id, n', 'return dL_dF, L_p, L_u, L_id, n'),
    ('gradient ascent (F.grad = -grad_F)', 'Crafter_protection/featureCrafter.py',
     'F.grad = grad_F', 'F.grad = -grad_F'),
    ("swap the critic's real and fake sides", 'Crafter_protection/crafting.py',
     'wgan.critic_step(self.D, self.opt, prior[j], recon[i], self.gp_weight)',
     'wgan.critic_step(self.D, self.opt, recon[i], prior[j], self.gp_weight)'),
    ('zero the implicit term', 'Crafter_protection/implicit.py',
     'return dL_dF - cross, n', 'return dL_dF - 0 * cross, n'),
    ('flip the implicit term', 'Crafter_protection/implicit.py',
     'return dL_dF - cross, n', 'return dL_dF + cross, n'),
    ('NoPeek: drop the distance-correlation term', 'Baselines/nopeek.py',
     'loss = bce + cfg.alpha * dcor', 'loss = bce'),
    ('DISCO: drop the pruner\'s privacy gradient', 'Baselines/disco.py',
     '(-cfg.alpha * rec).backward()', '(-0.0 * rec).backward()'),
    ('Shredder: drop the noise-magnitude term', 'Baselines/shredder.py',
     'loss = bce - cfg.lam * noise.log_scale.mean()', 'loss = bce'),
    ("Crafter: drop the identity term", 'Crafter_protection/featureCrafter.py',
     '(cfg.gamma * L_id if L_id is not None else 0)', '0', ID_TESTS),
    ("Crafter: flip the identity term's sign", 'Crafter_protection/featureCrafter.py',
     '(cfg.gamma * L_id if L_id is not None else 0)', '(-cfg.gamma * L_id if L_id is not None else 0)', ID_TESTS),
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


def run_tests(tree, tests):
    # PYTHONPATH: the copy's modules before the editable install's (the repository itself)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '1'), PYTHONPATH=str(tree))
    t = time.time()
    p = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', *tests],
                       cwd=tree, env=env, capture_output=True, text=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    failed = sorted({ln.split('::')[-1].split(' ')[0] for ln in lines if ln.startswith('FAILED')})
    summary = (lines[-1] if lines else p.stderr[-300:]) + (f" [{', '.join(failed)}]" if failed else '')
    return p.returncode, summary, time.time() - t


def main():
    results = []
    with tempfile.TemporaryDirectory(prefix='mutation_check_') as tmp:
        for name, file, old, new, *tests in [('unmutated', None, None, None)] + MUTATIONS:
            tree = Path(tmp) / f'tree{len(results)}'
            copy_tree(tree)
            if file:
                path = tree / file
                text = path.read_text()
                if text.count(old) != 1:
                    raise SystemExit(f'mutation {name!r}: expected one {old!r} in {file}, '
                                     f'found {text.count(old)}')
                path.write_text(text.replace(old, new))
            rc, last, wall = run_tests(tree, (tests[0] if tests else DEFENCE_TESTS.get(file, TESTS)) if file else
                                       TESTS + ID_TESTS + [t for ts in DEFENCE_TESTS.values() for t in ts])
            ok = (rc == 0) if file is None else (rc != 0)
            results.append(ok)
            print(f"{'OK  ' if ok else 'BAD '} {name:<42} tests {'pass' if rc == 0 else 'FAIL'} "
                  f'({wall:.0f} s): {last}', flush=True)
            shutil.rmtree(tree)
    print('mutation check:', 'every mutation is caught' if all(results) else 'NOT all caught')
    return 0 if all(results) else 1


if __name__ == '__main__':
    sys.exit(main())
