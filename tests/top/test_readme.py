"""The README's numbered steps run as written: every command of every `### N.` block, in order, at
the tiny preset (`--preset demo` becomes `--preset tiny` with temporary data and output folders),
so the steps cannot drift from the scripts."""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def steps(text):
    """[(number, title, [command, ...])] of the README's '### N. title' + ```bash blocks."""
    found = re.findall(r'^### (\d+)\. ([^\n]+)\n```bash\n(.*?)```', text, re.M | re.S)
    return [(int(n), t, [c for c in body.splitlines() if c.strip()]) for n, t, body in found]


def at_tiny(cmd, tmp):
    args = shlex.split(cmd)
    assert args[0] == 'python' and args[1].endswith('.py'), cmd
    script, rest = args[1], args[2:]
    if script == 'dataset/validate.py':
        return [script, str(tmp / 'data')]
    if script == 'dataset/make_synthetic.py':
        rest = [str(tmp / 'data') if a == 'dataset/synthetic32' else a for a in rest]
        return [script] + ['tiny' if a == 'demo' else a for a in rest]
    assert rest[:2] == ['--preset', 'demo'], f'{cmd}: a step runs at --preset demo first'
    dirs = ['--data_dir', tmp / 'data', '--params_dir', tmp / 'params', '--results_dir',
            tmp / 'results', '--crafted_dir', tmp / 'crafted']
    return [script, '--preset', 'tiny', *map(str, dirs), *rest[2:]]


def test_steps_are_numbered_one_to_n():
    got = steps((ROOT / 'README.md').read_text())
    assert [n for n, _, _ in got] == list(range(1, len(got) + 1)) and len(got) >= 10
    assert all(cmds for _, _, cmds in got)


def test_parsing_sees_a_broken_step():
    text = '### 1. a\n```bash\npython x.py --preset demo\n```\n### 3. b\n```bash\npython y.py\n```\n'
    assert [n for n, _, _ in steps(text)] == [1, 3]
    with pytest.raises(AssertionError):
        at_tiny('python y.py --epochs 2', Path('/tmp'))


def test_every_step_runs_at_tiny(tmp_path):
    for n, title, cmds in steps((ROOT / 'README.md').read_text()):
        for cmd in cmds:
            proc = subprocess.run([sys.executable, *at_tiny(cmd, tmp_path)], cwd=ROOT,
                                  capture_output=True, text=True)
            assert proc.returncode == 0, f'step {n} ({title}): {cmd}\n{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}'
    reports = list((tmp_path / 'results').rglob('report.md'))
    assert len(reports) == 1 and 'crafter_beta' in reports[0].read_text()
