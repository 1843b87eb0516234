"""Prepare CelebA in the layout of dataset/layout.py, from the official CelebA files.

    python dataset/prepare_celeba.py --src CELEBA_DIR --out dataset/celeba64
    python dataset/prepare_celeba.py --preset celeba-cpu       # ../shared/data/celeba64 at 32 px

--src holds (directly or in sub-folders such as the official Img/, Anno/, Eval/):
  * one folder of images with the official file names (img_align_celeba/ or any other name; the
    single folder holding .jpg/.png files is used, or name it with --img_dir),
  * identity_CelebA.txt      `NNNNNN.jpg <identity>` per line,
  * list_attr_celeba.txt     line 1 the image count, line 2 the attribute names, then
                             `NNNNNN.jpg` and one 1/-1 per attribute (any run of spaces between
                             fields; trailing spaces and CRLF line ends are fine),
  * list_eval_partition.txt  optional; its partition counts go to dataset.json, the split below
                             does not use it.

Every image is centre-cropped to a square and resized to img_size (layout.center_crop_resize) and
saved as JPEG under its original name (public/182638.jpg); a JPEG that already is img_size square
RGB is copied byte for byte. Private = the n_private identities with the most images (ties: the
smaller identity number first); public = every other identity. layout.split_eval splits the
private images into eval_train/eval_test; a private identity with a single image cannot be in both
and is dropped (counted in dataset.json). Attributes become 0/1 (1 = the official +1).

Images and labels that do not match:
  * an image in the folder without a row in identity_CelebA.txt or list_attr_celeba.txt is
    skipped; the count is printed and kept in dataset.json (skipped_unlabelled_images);
  * a label row whose image is not in the folder is an error (the folder is probably incomplete
    or the wrong one); --allow_missing true uses only the images present instead.

The output folder is built under a temporary name, checked with dataset/validate.py and only then
renamed into place, so a failed run leaves no half-written dataset. Relative --src/--img_dir are
looked up from the working directory first, then from the repository root; --out is relative to
the repository root (where the stage scripts' --data_dir looks).
"""
from pathlib import Path

import os
import shutil
import time
from collections import Counter

from common import config, io
from dataset import layout
from dataset.validate import check, summary

HP = dict(
    src='',                 # folder with the official CelebA files (required)
    img_dir='',             # image folder ('' = the single folder under src holding .jpg/.png)
    out='dataset/celeba64',  # output folder (relative to the repository root)
    img_size=64,            # paper: 64x64 faces
    n_private=1000,         # paper: the 1000 identities with the most images are private
    eval_test_frac=0.3,     # share of each private identity's images held out for eval_test
    allow_missing=False,    # true: label rows whose image is absent are skipped, not an error
    workers=2,              # processes decoding/resizing (1 = in this process)
    overwrite=False,        # replace an existing --out folder
)
# what needs more than "finite and >= 0" (common/config.py): counts, learning rates, fractions
RANGES = dict(img_size='>=1', n_private='>=1', eval_test_frac='(0,1)')
SHARED = '../shared/data/celeba64'
PRESETS = {
    'tiny': dict(src=SHARED, out='dataset/celeba_tiny', img_size=32, n_private=5),
    'celeba-cpu': dict(src=SHARED, out='dataset/celeba32', img_size=32, n_private=100),
}
IMAGE_EXTS = ('.jpg', '.jpeg', '.png')
ID_FILE, ATTR_FILE, PART_FILE = 'identity_CelebA.txt', 'list_attr_celeba.txt', 'list_eval_partition.txt'
PARTITIONS = {'0': 'train', '1': 'val', '2': 'test'}


class PrepareError(SystemExit):
    """Bad input for a preparer: exits with status 1 and the message."""

    def __init__(self, msg):
        super().__init__(f'error: {msg}')


# --------------------------------------------------------------------- helpers (also for LFW)

def resolve_input(path, *bases):
    """An input path: absolute as given; relative, the first that exists among the bases, the
    working directory and the repository root (the repository-root path when none exists)."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    for base in [*bases, Path.cwd()]:
        if (Path(base) / p).exists():
            return (Path(base) / p).resolve()
    return io.repo_path(p).resolve()


def walk_dirs(root, max_depth=3):
    """root and its sub-folders down to max_depth levels, hidden folders skipped, sorted."""
    out, level = [], [Path(root)]
    for _ in range(max_depth + 1):
        out += level
        nxt = []
        for d in level:
            try:
                nxt += sorted(e.path for e in os.scandir(d) if e.is_dir() and not e.name.startswith('.'))
            except OSError:
                pass
        level = [Path(p) for p in nxt]
    return out


def find_file(root, name, flag):
    """The single file called `name` under root (a few levels deep)."""
    hits = [d / name for d in walk_dirs(root) if (d / name).is_file()]
    if len(hits) > 1:
        raise PrepareError(f'{len(hits)} files named {name} under {root}: '
                           + ', '.join(str(h) for h in hits) + f'; choose one with {flag} PATH')
    return hits[0] if hits else None


def out_dir(cfg):
    """Resolve --out and refuse an existing one early (before minutes of work)."""
    out = io.repo_path(cfg.out).resolve()
    if out.exists() and not cfg.overwrite:
        raise PrepareError(f'{out} already exists; pass --overwrite true to replace it, or choose '
                           'another --out')
    return out


def _convert_one(job):
    """(src, dst, size, crop) -> None, or an error string. crop > 0: take the central crop x crop
    region first (LFW). A JPEG that already is size x size RGB is copied unchanged."""
    from PIL import Image
    src, dst, size, crop = job
    try:
        with Image.open(src) as img:
            img.load()
            if crop:
                w, h = img.size
                c = min(crop, w, h)
                left, top = (w - c) // 2, (h - c) // 2
                img = img.crop((left, top, left + c, top + c))
            elif img.format == 'JPEG' and img.mode == 'RGB' and img.size == (size, size):
                shutil.copyfile(src, dst)
                return None
            layout.save_jpeg(layout.center_crop_resize(img, size), dst)
    except Exception as e:  # a corrupt source image: reported together below
        return f'{src}: {type(e).__name__}: {e}'
    return None


def convert_images(jobs, workers=2, desc='images'):
    """Run _convert_one over jobs with a progress bar; PrepareError listing the unreadable ones."""
    import multiprocessing as mp
    from tqdm import tqdm
    bar = dict(total=len(jobs), desc=desc, unit='img', mininterval=1.0)
    if workers > 1 and len(jobs) > 256:
        ctx = mp.get_context('fork') if 'fork' in mp.get_all_start_methods() else mp.get_context()
        with ctx.Pool(workers) as pool:
            errors = [e for e in tqdm(pool.imap(_convert_one, jobs, chunksize=64), **bar) if e]
    else:
        errors = [e for e in tqdm(map(_convert_one, jobs), **bar) if e]
    if errors:
        raise PrepareError(f'{len(errors)} source images cannot be read, e.g.\n  '
                           + '\n  '.join(errors[:5])
                           + '\nRe-download or re-extract them (nothing was written).')


# ------------------------------------------------------------------------------ CelebA files

def _lines(path):
    try:
        return path.read_text(encoding='utf-8', errors='strict').splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise PrepareError(f'{path}: cannot be read as text ({e})') from None


def read_identity(path):
    """identity_CelebA.txt -> {file name: identity}."""
    ids, line_of = {}, {}
    for n, line in enumerate(_lines(path), 1):
        f = line.split()
        if not f:
            continue
        if len(f) != 2:
            raise PrepareError(f'{path}, line {n}: expected "NNNNNN.jpg <identity>", found {line.strip()!r}')
        try:
            pid = int(f[1])
        except ValueError:
            raise PrepareError(f'{path}, line {n}: identity {f[1]!r} is not an integer') from None
        if f[0] in ids:
            raise PrepareError(f'{path}, line {n}: {f[0]} is listed twice (also line {line_of[f[0]]})')
        ids[f[0]], line_of[f[0]] = pid, n
    if not ids:
        raise PrepareError(f'{path}: no identity rows; is it the official identity_CelebA.txt?')
    return ids


def read_attributes(path):
    """list_attr_celeba.txt -> (names, {file name: tuple of 0/1})."""
    lines = _lines(path)
    head = lines[0].split() if lines else []
    if len(head) != 1 or not head[0].isdigit():
        raise PrepareError(f'{path}, line 1: expected the number of images (official format: line 1 '
                           f'the count, line 2 the attribute names), found {(lines or [""])[0].strip()!r}')
    count = int(head[0])
    names = lines[1].split() if len(lines) > 1 else []
    if not names or any(n.lower().endswith(IMAGE_EXTS) for n in names) \
            or any(n.lstrip('-').isdigit() for n in names):
        raise PrepareError(f'{path}, line 2: expected the attribute names (e.g. 5_o_Clock_Shadow '
                           f'Arched_Eyebrows ...), found {(lines[1] if len(lines) > 1 else "").strip()[:80]!r}')
    if len(set(names)) != len(names):
        dup = [k for k, v in Counter(names).items() if v > 1]
        raise PrepareError(f'{path}, line 2: attribute names repeat: {dup}')
    if any(',' in n for n in names):
        raise PrepareError(f'{path}, line 2: attribute names must not contain commas')
    attrs, line_of = {}, {}
    for n, line in enumerate(lines[2:], 3):
        f = line.split()
        if not f:
            continue
        if len(f) != len(names) + 1:
            raise PrepareError(f'{path}, line {n}: {len(f) - 1} values for {len(names)} attributes '
                               f'(line 2): {line.strip()[:80]!r}')
        if f[0] in attrs:
            raise PrepareError(f'{path}, line {n}: {f[0]} is listed twice (also line {line_of[f[0]]})')
        vals = []
        for a, v in zip(names, f[1:]):
            if v == '1':
                vals.append(1)
            elif v == '-1':
                vals.append(0)
            else:
                raise PrepareError(f'{path}, line {n}: attribute {a} of {f[0]} is {v!r}, expected 1 or -1')
        attrs[f[0]], line_of[f[0]] = tuple(vals), n
    if len(attrs) != count:
        raise PrepareError(f'{path}, line 1: says {count} images but the file has {len(attrs)} image '
                           'rows; the file is truncated or edited, re-download list_attr_celeba.txt')
    return names, attrs


def read_partition(path):
    """list_eval_partition.txt -> {file name: 'train'|'val'|'test'}."""
    part = {}
    for n, line in enumerate(_lines(path), 1):
        f = line.split()
        if not f:
            continue
        if len(f) != 2 or f[1] not in PARTITIONS:
            raise PrepareError(f'{path}, line {n}: expected "NNNNNN.jpg 0|1|2", found {line.strip()!r}')
        part[f[0]] = PARTITIONS[f[1]]
    return part


def find_image_dir(src):
    """The single folder under src holding .jpg/.png files."""
    hits = []
    for d in walk_dirs(src):
        try:
            if any(e.name.lower().endswith(IMAGE_EXTS) for e in os.scandir(d) if e.is_file()):
                hits.append(d)
        except OSError:
            pass
    if len(hits) == 1:
        return hits[0]
    if not hits:
        zips = [p for d in walk_dirs(src, 1) for p in d.glob('*.zip')]
        hint = f' Unzip {zips[0].name} first.' if zips else ''
        raise PrepareError(f'no folder with .jpg/.png images under {src}.{hint} Point --img_dir at '
                           'the CelebA image folder (e.g. img_align_celeba).')
    raise PrepareError(f'{len(hits)} folders with images under {src}: '
                       + ', '.join(str(h) for h in hits[:6]) + '; choose one with --img_dir')


def list_images(img_dir):
    """{file stem: file name} of the images in img_dir."""
    by_stem = {}
    for e in os.scandir(img_dir):
        if e.is_file() and e.name.lower().endswith(IMAGE_EXTS):
            stem = e.name.rsplit('.', 1)[0]
            if stem in by_stem:
                raise PrepareError(f'{img_dir}: both {by_stem[stem]} and {e.name}; keep one of them')
            by_stem[stem] = e.name
    return by_stem


def select_private(counts, k):
    """The k identities with the most images; ties: smaller identity first."""
    if k < 1:
        raise PrepareError(f'--n_private {k}: need at least 1 private identity')
    if k >= len(counts):
        raise PrepareError(f'--n_private {k} leaves no public identity: the data has only '
                           f'{len(counts)} identities; choose --n_private below {len(counts)}')
    return set(sorted(counts, key=lambda i: (-counts[i], i))[:k])


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, stage=False, ranges=RANGES, description=__doc__)
    cfg.show('prepare_celeba')
    t0 = time.time()
    if not cfg.src:
        raise PrepareError('--src is required: the folder holding identity_CelebA.txt, '
                           'list_attr_celeba.txt and the image folder (or --preset celeba-cpu for '
                           f'{SHARED})')
    if cfg.img_size < 1:
        raise PrepareError(f'--img_size {cfg.img_size}: must be positive')
    src = resolve_input(cfg.src)
    if not src.is_dir():
        raise PrepareError(f'--src {cfg.src}: no such folder ({src})')
    out = out_dir(cfg)
    img_dir = resolve_input(cfg.img_dir, src) if cfg.img_dir else find_image_dir(src)
    if not img_dir.is_dir():
        raise PrepareError(f'--img_dir {cfg.img_dir}: no such folder ({img_dir})')
    id_path, attr_path = find_file(src, ID_FILE, '--src'), find_file(src, ATTR_FILE, '--src')
    for name, p in ((ID_FILE, id_path), (ATTR_FILE, attr_path)):
        if p is None:
            raise PrepareError(f'{name} not found under {src}; it is in the official CelebA download '
                               '(Anno/). Put it in --src.')
    part_path = find_file(src, PART_FILE, '--src')
    print(f'images {img_dir}\nlabels {id_path}, {attr_path}' + (f', {part_path}' if part_path else ''))

    files = list_images(img_dir)
    ids = read_identity(id_path)
    attr_names, attrs = read_attributes(attr_path)
    stem = {n: n.rsplit('.', 1)[0] for n in set(ids) | set(attrs)}
    labelled = {stem[n] for n in ids} & {stem[n] for n in attrs}
    unlabelled = [s for s in files if s not in labelled]
    missing = sorted(n for n in set(ids) | set(attrs) if stem[n] not in files)
    if missing and not cfg.allow_missing:
        where = ID_FILE if missing[0] in ids else ATTR_FILE
        raise PrepareError(f'{len(missing)} images named in the label files are not in {img_dir}, '
                           f'e.g. {missing[0]} ({where}). Point --img_dir at the complete image folder, '
                           'or pass --allow_missing true to use only the images present.')
    if missing:
        print(f'note: {len(missing)} label rows name images not in {img_dir}; skipped (--allow_missing)')
    if unlabelled:
        print(f'note: {len(unlabelled)} images have no row in {ID_FILE} or {ATTR_FILE}; skipped, '
              f'e.g. {files[sorted(unlabelled)[0]]}')
    used = sorted((n for n in ids if n in attrs and stem[n] in files), key=lambda n: stem[n])
    if not used:
        raise PrepareError(f'no image of {img_dir} has both an identity and attributes')
    counts = Counter(ids[n] for n in used)
    private = select_private(counts, cfg.n_private)
    single = sorted(i for i in private if counts[i] < 2)
    if single:
        print(f'note: {len(single)} of the {cfg.n_private} private identities have one image and '
              'cannot be split into eval_train/eval_test; dropped')
        drop = set(single)
        used = [n for n in used if ids[n] not in drop]
    part = read_partition(part_path) if part_path else {}

    with io.atomic_dir(out, overwrite=cfg.overwrite) as tmp:
        (tmp / 'public').mkdir()
        (tmp / 'private').mkdir()
        rows = {'public': [], 'private': []}
        jobs = []
        for n in used:
            split = 'private' if ids[n] in private else 'public'
            name = stem[n] + '.jpg'
            rows[split].append((name, ids[n], attrs[n]))
            jobs.append((str(img_dir / files[stem[n]]), str(tmp / split / name), cfg.img_size, 0))
        convert_images(jobs, cfg.workers, desc=f'{cfg.img_size}px')
        part_counts = dict(sorted(Counter(part.get(n, 'unlisted') for n in used).items())) if part else None
        layout.write_tables(tmp, rows['public'], rows['private'], attr_names, img_size=cfg.img_size,
                            source='celeba', seed=cfg.seed, test_frac=cfg.eval_test_frac, extra=dict(
                                src=str(src), img_dir=str(img_dir), n_private=cfg.n_private,
                                selection='top n_private identities by image count, ties: smaller '
                                          'identity number first',
                                dropped_private_ids_with_one_image=len(single),
                                skipped_unlabelled_images=len(unlabelled),
                                skipped_missing_images=len(missing),
                                celeba_partition_counts=part_counts))
        meta = check(tmp, deep=False)
    print(summary(out, meta))
    print(f'wrote {out} in {time.time() - t0:.1f}s')
    return meta


if __name__ == '__main__':
    main()
