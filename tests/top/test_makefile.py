"""An edit at the top of a script takes effect under `make`: with every stamp up to date,
changing one hyperparameter default makes `make -n` plan exactly that stage and the stages that
depend on it (a copy of the code in a temporary folder, so the repository is never edited)."""
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def plan(tree, out):
    """The stamps `make -n protections PRESET=tiny` would make, as a set of stage names."""
    proc = subprocess.run(
        ['make', '-n', '-C', str(tree), 'protections', 'PRESET=tiny', f'DATA={out}/data',
         f'P={out}/params', f'RESULTS={out}/results', f'CRAFTED={out}/crafted', f'PY={sys.executable}',
         f'VENV={ROOT}/.venv/.installed'], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {m.group(1) for m in re.finditer(r'touch \S*/\.done_(\S+)', proc.stdout)}


@pytest.fixture
def tree(tmp_path):
    if shutil.which('make') is None:
        pytest.skip('make is not installed')
    code = tmp_path / 'code'
    files = subprocess.run(['git', 'ls-files', '*.py', 'Makefile', 'pyproject.toml', '*.txt'], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    files += [str(f.relative_to(ROOT)) for f in ROOT.glob('*/*.py')]     # new files not yet in git
    old = time.time() - 3000           # the code, then the data, then the stamps: all in the past
    for f in set(files):
        if (ROOT / f).is_file():
            (code / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, code / f)
            os.utime(code / f, (old, old))
    out = tmp_path / 'out'
    stages = plan(code, out)
    assert {'enc', 'gan', 'amor', 'dec', 'f2id', 'gan_a2', 'attacker_id'} <= stages
    # everything up to date: the data, then every stamp, newer than the code
    (out / 'data').mkdir(parents=True)
    (out / 'data' / 'dataset.json').write_text('{}')
    (out / 'params').mkdir()
    t = old + 1000
    os.utime(out / 'data' / 'dataset.json', (t, t))
    for s in stages:
        (out / 'params' / f'.done_{s}').touch()
        os.utime(out / 'params' / f'.done_{s}', (t + 10, t + 10))
    assert plan(code, out) == set()
    return code, out, stages


def edit_default(file, key, new):
    text = file.read_text()
    changed = re.sub(rf'^(\s+{key}=)[^,#]+,', rf'\g<1>{new},', text, count=1, flags=re.M)
    assert changed != text, f'no default {key}= in {file}'
    file.write_text(changed)            # now: after the stamps


def test_editing_feature2id_reruns_it_and_its_adaptive_runs_only(tree):
    code, out, stages = tree
    edit_default(code / 'Feature2ID' / 'f2id_train.py', 'lr', 5e-4)     # tiny keeps the default lr
    planned = plan(code, out)
    assert 'f2id' in planned and any(s.startswith('f2id_adaptive_') for s in planned)
    # the same script trains the defender's f2id_public.pt, which Crafter's identity term reads
    assert planned == {'f2id', 'f2id_public'} | {s for s in stages if s.startswith(('f2id_adaptive_', 'crafterid_'))}


def test_editing_the_gan_reruns_everything_built_on_the_prior_and_nothing_else(tree):
    code, out, stages = tree
    edit_default(code / 'WhiteBoxAttack' / 'train_gan.py', 'lr', 2e-4)
    planned = plan(code, out)
    assert {'gan', 'gan_a2', 'amor', 'amor_a2', 'attack'} <= planned
    assert any(s.startswith('crafter_') for s in planned) and any(s.startswith('adaptive_') for s in planned)
    # the target net, the oracle, the decoder and noise never read the prior
    untouched = {'enc', 'eval', 'dec', 'f2id', 'attacker_id'} | {s for s in stages if s.startswith('noise_')}
    assert not planned & untouched


def test_a_preset_says_in_help_which_keys_it_overrides():
    proc = subprocess.run([sys.executable, str(ROOT / 'WhiteBoxAttack' / 'train_gan.py'), '--help'],
                          capture_output=True, text=True)
    assert proc.returncode == 0
    line = next(l for l in proc.stdout.splitlines() if l.strip().startswith('--g_steps'))
    assert 'tiny' in line and 'demo' in line, line
