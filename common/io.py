"""Atomic file output: write beside the target, then rename, so a crash never leaves half a file."""
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]   # the repository root
_UMASK = os.umask(0)
os.umask(_UMASK)


def repo_path(path):
    """Paths in configs are relative to the repository root, never to the working directory."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else ROOT / p


def rel(path):
    """A path as a user would type it from the repository root (for messages)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


@contextmanager
def atomic_path(path):
    """Yield a temporary file name in the target's folder; rename it onto `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)      # mkstemp makes 0600 files; give the usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path, text):
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def save_torch(obj, path):
    import torch
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_figure(fig, path, **kw):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip('.') or 'png', **kw)


@contextmanager
def atomic_dir(path, overwrite=False):
    """Build a folder under a temporary name and rename it into place only when complete."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f'{path} already exists; pass --overwrite true to replace it')
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f'.{path.name}.old')
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
