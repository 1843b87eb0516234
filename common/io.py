"""Atomic file output: write `.<name>.<pid>.<random>.tmp` beside the target, then rename, so a crash
never leaves half a file; `clean_orphans` removes what a killed writer left, once its process is
gone (so processes sharing a folder never delete each other's work)."""
import os
import shutil
import tempfile
import time
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
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def _temporary(path, make):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_orphans(path.parent)
    return path, make(prefix=f'.{path.name}.{os.getpid()}.', suffix='.tmp', dir=path.parent)


@contextmanager
def atomic_path(path):
    """Yield a temporary file name in the target's folder; rename it onto `path` on success."""
    path, (fd, tmp) = _temporary(path, tempfile.mkstemp)
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
    if Path(path).exists() and not overwrite:
        raise FileExistsError(f'{path} already exists; pass --overwrite true to replace it')
    path, tmp = _temporary(path, tempfile.mkdtemp)
    tmp, old = Path(tmp), path.with_name(f'.{path.name}.old')
    try:
        yield tmp
        if path.exists():               # the old folder moves aside, the new one in, then it goes
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_CLEANED = set()       # folders already cleaned by this process
LEGACY_AGE_S = 60      # a temporary file without a pid in its name is an orphan after this long


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:        # exists, owned by someone else
        pass
    return True


def orphan_owner(name):
    """The pid in a temporary name `.<target>.<pid>.<random>.tmp`, or None (older names)."""
    parts = name[:-len('.tmp')].rsplit('.', 2) if name.startswith('.') and name.endswith('.tmp') else []
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def clean_orphans(folder, force=False):
    """Remove temporary files of atomic writes whose writer is gone; returns their names:
    `.<name>.<pid>.<random>.tmp` (files and folders) whose pid no longer runs, and files of the
    older `.<name>.<random>.tmp` form untouched for LEGACY_AGE_S. Once per folder unless force."""
    folder = Path(folder)
    key = str(folder.resolve()) if folder.exists() else None
    if key is None or (key in _CLEANED and not force):
        return []
    _CLEANED.add(key)
    removed, now = [], time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        if not (e.name.startswith('.') and e.name.endswith('.tmp')):
            continue
        pid = orphan_owner(e.name)
        try:
            if pid is not None and _pid_alive(pid):
                continue
            if pid is None and (e.is_dir(follow_symlinks=False)      # an older-style name: only
                                or now - e.stat(follow_symlinks=False).st_mtime < LEGACY_AGE_S):
                continue                                             # old files, never folders
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path, ignore_errors=True)
            else:
                os.remove(e.path)
            removed.append(e.name)
        except OSError:
            pass              # gone already, or not ours to remove
    if removed:
        print(f'note: removed {len(removed)} unfinished temporary file(s) of an interrupted run '
              f'in {rel(folder)}: ' + ', '.join(sorted(removed)[:3]) + (' ...' if len(removed) > 3 else ''),
              flush=True)
    return removed
