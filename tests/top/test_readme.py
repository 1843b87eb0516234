"""The README's numbered steps run as written: every command of every `### N.` block, in order, at
the tiny preset (`--preset demo` becomes `--preset tiny` with temporary data and output folders),
so the steps cannot drift from the scripts."""
import json
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


# One interpreter runs the steps one after another, each as `python script args` would run it
# (runpy as __main__, its own argv); it saves a torch import (~3 s) per step. It stops at the
# first step that exits non-zero and names it.
RUNNER = """
import json, runpy, sys
for n, cmd, argv in json.loads(sys.argv[1]):
    print(f'@@ step {n}: {cmd}', flush=True)
    sys.argv = argv
    try:
        runpy.run_path(argv[0], run_name='__main__')
    except SystemExit as e:
        if e.code not in (0, None):
            print(f'@@ failed with exit status {e.code}', flush=True)
            sys.exit(1)
"""


def test_every_step_runs_at_tiny(tmp_path):
    plan = [(n, cmd, at_tiny(cmd, tmp_path)) for n, _, cmds in steps((ROOT / 'README.md').read_text())
            for cmd in cmds]
    proc = subprocess.run([sys.executable, '-c', RUNNER, json.dumps(plan)], cwd=ROOT,
                          capture_output=True, text=True)
    last = [line for line in proc.stdout.splitlines() if line.startswith('@@ step')][-1:]
    assert proc.returncode == 0, f'{last}\n{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}'
    assert last == [f'@@ step {plan[-1][0]}: {plan[-1][1]}']      # every step ran
    reports = list((tmp_path / 'results').rglob('report.md'))
    assert len(reports) == 1 and 'crafter_beta' in reports[0].read_text()
