"""Shared helpers of the robustness suite (issue 14): snapshots that prove nothing was written."""
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def snapshot(folder):
    """{relative path: sha1} of every file under folder (hidden ones included); {} if missing."""
    folder = Path(folder)
    if not folder.exists():
        return {}
    out = {}
    for dirpath, _, files in os.walk(folder):
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(folder))] = hashlib.sha1(p.read_bytes()).hexdigest()
    return out


def copy_data(tiny, dest):
    """A copy of the tiny dataset without its image cache, to break on purpose."""
    tiny.ensure('data')
    shutil.copytree(tiny.data_dir, dest, ignore=shutil.ignore_patterns('.cache'))
    return Path(dest)


def stage_args(tiny, params_dir, data_dir=None, tmp=None):
    """The tiny run's arguments with this test's own output folders."""
    args = list(tiny.args)
    args[args.index('--params_dir') + 1] = str(params_dir)
    if data_dir is not None:
        args[args.index('--data_dir') + 1] = str(data_dir)
    if tmp is not None:
        args[args.index('--results_dir') + 1] = str(Path(tmp) / 'results')
        args[args.index('--crafted_dir') + 1] = str(Path(tmp) / 'crafted')
    return args


def run_script(script, args, env=None, timeout=300):
    """Run a stage as a user would; returns (exit status, stdout, stderr)."""
    e = dict(os.environ, OMP_NUM_THREADS='1', **(env or {}))
    e.pop('CRAFTER_DEBUG', None) if 'CRAFTER_DEBUG' not in (env or {}) else None
    r = subprocess.run([sys.executable, str(ROOT / script)] + [str(a) for a in args], cwd=ROOT,
                       env=e, capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def one_line_error(stderr):
    """The stderr of a user error: exactly one line, `error: ...`, no traceback."""
    lines = [line.strip() for line in stderr.replace('\r', '\n').splitlines() if line.strip()]
    lines = [line for line in lines if '%|' not in line]      # progress bars (tqdm) go to stderr
    assert 'Traceback' not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith('error: '), stderr
    return lines[0]
