"""Check a prepared dataset folder before anything trains on it.

    python dataset/validate.py DIR [--deep true|false]

Exit status 0 and a one-line summary when the folder is sound (plus a note naming any file in
public/ or private/ that is not an image: every stage ignores those); otherwise status 1 and a
message that names the file, the row (1-based line number of the CSV, header = line 1), what is
wrong and how to fix it. Identities are integers everywhere ('024' and '24' are one identity), as
the loader reads them. The stage scripts' loader calls `check_structure` (fast: reads the CSVs, decodes no
image) and uses `decode_image` for every image it reads; `--deep true` (the default here) also
decodes every image once.

The layout itself is described in dataset/layout.py.
"""
import sys
from pathlib import Path

import argparse
import gc
import json
import os

import numpy as np

from common import config, io
from dataset import layout

# what the image folders may hold; anything else (notes.txt, Thumbs.db) is named and ignored
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.ppm', '.tif', '.tiff')

PREPARERS = ('python dataset/make_synthetic.py --out {d}  (synthetic faces, no download) or '
             'python dataset/prepare_celeba.py --src CELEBA_DIR --out {d}  (real CelebA)')
REMAKE = {
    'celeba': 'python dataset/prepare_celeba.py --src CELEBA_DIR --out {d} --overwrite true',
    'lfw': 'python dataset/prepare_lfw.py --src LFW_DIR --out {d} --overwrite true',
    'synthetic': 'python dataset/make_synthetic.py --out {d} --overwrite true',
}


class DatasetError(config.UserError):
    """A prepared dataset folder is missing, malformed or inconsistent. The message says how to fix it.

    A config.UserError: uncaught, a stage prints it as one line `error: ...` and exits with 2.
    """
    prefix = ''


def is_image_name(name):
    return not name.startswith('.') and name.lower().endswith(IMAGE_SUFFIXES)


def list_images(folder):
    """The image files of a folder, sorted: what the loader decodes and caches."""
    return sorted(f for f in os.listdir(folder) if is_image_name(f))


def stray_files(data_dir):
    """Files in the image folders that are not images (ignored by the loader), as rel paths."""
    out = []
    for folder in sorted({s[2] for s in layout.SPLITS.values()}):
        p = Path(data_dir) / folder
        if p.is_dir():
            out += [f'{io.rel(p)}/{f}' for f in sorted(os.listdir(p))
                    if not f.startswith('.') and not is_image_name(f)]
    return out


def _remake(data_dir, meta=None):
    d = io.rel(data_dir)
    cmd = REMAKE.get((meta or {}).get('source', ''))
    return f're-create the folder: {cmd.format(d=d)}' if cmd else \
        're-create the folder with the preparer that made it: ' + PREPARERS.format(d=d)


def _err(path, line, what, fix):
    where = io.rel(path) + (f', line {line}' if line else '')
    return DatasetError(f'{where}: {what}. Fix: {fix}')


# ------------------------------------------------------------------------------------- tables

class _Table:
    """One CSV: header, rows as lists of strings, and the line number of each row."""

    def __init__(self, path, header, rows, lines):
        self.path, self.header, self.rows, self.lines = path, header, rows, lines
        self.line_of = dict(zip((r[0] for r in rows), lines))   # image -> line (unique, checked)


def _read_csv(path, data_dir, meta, maxsplit=-1):
    """Read a layout CSV by plain splitting (the preparers never quote fields).

    maxsplit=1 keeps an attribute row as [image, 'v,v,...'] (splitting 40 columns of 16k rows
    is most of the time otherwise).
    """
    if not path.is_file():
        raise _err(path, None, 'file is missing', _remake(data_dir, meta))
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise _err(path, None, f'cannot be read ({e})', _remake(data_dir, meta)) from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise _err(path, 1, 'the header line is empty' if lines else 'file is empty (no header)',
                   _remake(data_dir, meta))
    nums = range(2, len(lines) + 1)
    if '' in lines:   # blank lines are ignored, but keep the true line numbers
        nums = [n for n, line in enumerate(lines, 1) if n > 1 and line]
        lines = lines[:1] + [line for line in lines[1:] if line]
    return _Table(path, lines[0].split(','), [line.split(',', maxsplit) for line in lines[1:]], nums)


def _check_rows(t, attr_names, data_dir, meta, files, folder):
    """Header, field count, value types, duplicates and image existence of one CSV.

    Fast set-based tests first; the slow row loop runs only to name the first bad row.
    """
    is_id = attr_names is None
    want = ['image', 'id'] if is_id else ['image'] + list(attr_names)
    if t.header != want:
        if is_id:
            what = f'header is {",".join(t.header)!r}, expected exactly "image,id"'
        elif t.header[:1] != ['image']:
            what = f'header must start with "image", found {",".join(t.header)!r}'
        else:
            got = t.header[1:]
            diff = [a for a in got if a not in attr_names] + [a for a in attr_names if a not in got]
            what = (f'attribute columns {got} differ from dataset.json "attributes" {list(attr_names)}'
                    + (f' (differing: {diff[:5]})' if diff else ' (same names, other order)')
                    + '; every attribute CSV must have the columns of dataset.json in that order')
        raise _err(t.path, 1, what, _remake(data_dir, meta))
    names = [r[0] for r in t.rows]
    ok = len(t.line_of) == len(names) and not set(names) - files and all(map(is_image_name, names))
    if ok and is_id:
        ok = set(map(len, t.rows)) <= {2}
        try:
            [int(r[1]) for r in t.rows]
        except (ValueError, IndexError):
            ok = False
    elif ok and not attr_names:
        ok = set(map(len, t.rows)) <= {1}
    elif ok:   # rows are [image, '0,1,...']: joined with ',', even chars are values, odd commas
        ok = set(map(len, t.rows)) <= {2} and set(len(r[1]) for r in t.rows) <= {2 * len(attr_names) - 1}
        if ok:
            joined = ','.join(r[1] for r in t.rows)
            ok = set(joined[0::2]) <= {'0', '1'} and set(joined[1::2]) <= {','}
    if ok:
        return
    seen = {}
    for row, n in zip(t.rows, t.lines):
        row = row[:1] + row[1].split(',') if not is_id and len(row) == 2 else row
        if len(row) != len(want):
            raise _err(t.path, n, f'{len(row)} fields, the header has {len(want)}',
                       _remake(data_dir, meta))
        name = row[0]
        if name in seen:
            raise _err(t.path, n, f'duplicate row: image {name!r} is already on line {seen[name]}',
                       'delete the duplicate line, or ' + _remake(data_dir, meta))
        seen[name] = n
        if name not in files:
            raise _err(t.path, n, f'image {name!r} does not exist in {io.rel(folder)}/',
                       _remake(data_dir, meta))
        if not is_image_name(name):
            raise _err(t.path, n, f'{name!r} is not an image file (expected one of '
                       f'{", ".join(IMAGE_SUFFIXES)})', _remake(data_dir, meta))
        if is_id:
            try:
                int(row[1])
            except ValueError:
                raise _err(t.path, n, f'identity {row[1]!r} is not an integer',
                           _remake(data_dir, meta)) from None
        else:
            for a, v in zip(attr_names, row[1:]):
                if v != '0' and v != '1':
                    raise _err(t.path, n, f'attribute {a} is {v!r}, expected 0 or 1',
                               _remake(data_dir, meta))
    raise AssertionError('unreachable: a fast check failed but no row is bad')


def _load_meta(data_dir):
    d = io.rel(data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise DatasetError(f'{d}: is a file, not a dataset folder. Fix: pass the folder that holds '
                           f'{layout.META} as --data_dir, or prepare one: ' + PREPARERS.format(d='DIR'))
    if not data_dir.is_dir():
        raise DatasetError(f'{d}: dataset folder does not exist. Fix: prepare it first: '
                           + PREPARERS.format(d=d) + ', or pass the right --data_dir')
    mp = data_dir / layout.META
    if not mp.is_file():
        raise _err(mp, None, 'file is missing, so this is not a prepared dataset folder (or its '
                   'preparation did not finish)', 'prepare it: ' + PREPARERS.format(d=d))
    try:
        meta = json.loads(mp.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _err(mp, getattr(e, 'lineno', None), f'not valid JSON ({e})', _remake(data_dir)) from None
    if not isinstance(meta, dict):
        raise _err(mp, None, 'expected a JSON object', _remake(data_dir))
    size, attrs = meta.get('img_size'), meta.get('attributes')
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise _err(mp, None, f'"img_size" is {size!r}, expected a positive integer', _remake(data_dir, meta))
    if not isinstance(attrs, list) or not all(isinstance(a, str) and a and ',' not in a for a in attrs) \
            or len(set(attrs)) != len(attrs):
        raise _err(mp, None, f'"attributes" is {attrs!r}, expected a list of distinct names '
                   'without commas ([] when the dataset has none)', _remake(data_dir, meta))
    return meta


def check_structure(data_dir):
    """Fast checks of the folder, dataset.json and every CSV (no image is decoded).

    Returns the dataset.json contents. Raises DatasetError. About 60 ms for 16k images.
    """
    enabled = gc.isenabled()
    gc.disable()   # the cyclic GC rescans the ~100k row lists many times; nothing here is cyclic
    try:
        return _check_structure(Path(data_dir))
    finally:
        if enabled:
            gc.enable()


def _check_structure(data_dir):
    meta = _load_meta(data_dir)
    attrs = meta['attributes']
    files = {}
    for folder in {s[2] for s in layout.SPLITS.values()}:
        p = data_dir / folder
        try:
            files[folder] = set(os.listdir(p)) if p.is_dir() else set()
        except OSError:
            files[folder] = set()

    # public images may lack an attribute row when dataset.json says how many (LFW: the
    # attribute file covers only some people; the target net trains on those that have one)
    no_attr_pub = meta.get('public_images_without_attributes', 0)
    if not isinstance(no_attr_pub, int) or isinstance(no_attr_pub, bool) or no_attr_pub < 0:
        raise _err(data_dir / layout.META, None, f'"public_images_without_attributes" is '
                   f'{no_attr_pub!r}, expected a count (0 or more)', _remake(data_dir, meta))
    ids, att = {}, {}
    for split, (id_csv, attr_csv, folder) in layout.SPLITS.items():
        t = _read_csv(data_dir / id_csv, data_dir, meta)
        _check_rows(t, None, data_dir, meta, files[folder], data_dir / folder)
        a = _read_csv(data_dir / attr_csv, data_dir, meta, maxsplit=1)
        _check_rows(a, attrs, data_dir, meta, files[folder], data_dir / folder)
        if not t.rows:
            raise _err(t.path, None, f'the {split} split is empty (header only)', _remake(data_dir, meta))
        only_id = [r[0] for r in t.rows if r[0] not in a.line_of]
        only_attr = [r[0] for r in a.rows if r[0] not in t.line_of]
        if split == 'public' and no_attr_pub and len(only_id) != no_attr_pub and not only_attr:
            raise _err(a.path, None, f'{len(only_id)} images of {id_csv} have no row here, but '
                       f'{layout.META} "public_images_without_attributes" says {no_attr_pub}',
                       _remake(data_dir, meta))
        if split == 'public' and no_attr_pub:
            only_id = []      # declared: public images without attribute rows (LFW)
        if only_id or only_attr:
            if only_id:
                name = only_id[0]
                what = (f'image {name!r} has no row in {attr_csv} ({len(only_id)} images of {id_csv} '
                        f'are missing there)')
                path, line = t.path, t.line_of[name]
            else:
                name = only_attr[0]
                what = (f'image {name!r} has no row in {id_csv} ({len(only_attr)} images of '
                        f'{attr_csv} are missing there)')
                path, line = a.path, a.line_of[name]
            raise _err(path, line, what + f'; {id_csv} and {attr_csv} must list the same images',
                       _remake(data_dir, meta))
        ids[split], att[split] = t, a

    # identities are integers, as the loader reads them: '024' and '24' are the same person
    pub, pvt = ids['public'], ids['private']
    first_pvt = {}
    for r, n in zip(pvt.rows, pvt.lines):
        first_pvt.setdefault(int(r[1]), (r[0], n, r[1]))
    shared = {int(r[1]) for r in pub.rows} & set(first_pvt)
    if shared:
        r, n = next((r, n) for r, n in zip(pub.rows, pub.lines) if int(r[1]) in shared)
        _, pline, ptext = first_pvt[int(r[1])]
        same = '' if ptext == r[1] else f', written {ptext!r} there; identities are compared as integers'
        raise _err(pub.path, n, f'identity {r[1]} (image {r[0]!r}) is also private (pvt_id.csv '
                   f'line {pline}{same}; {len(shared)} identities are in both); public and '
                   'private identities must not overlap', _remake(data_dir, meta))

    # eval_train / eval_test: a disjoint split of exactly the private rows, every identity in both
    pvt_rows = {r[0]: int(r[1]) for r in pvt.rows}
    ev = {s: ids[s] for s in ('eval_train', 'eval_test')}
    for s, t in ev.items():
        for r, n in zip(t.rows, t.lines):
            if r[0] not in pvt_rows:
                raise _err(t.path, n, f'image {r[0]!r} is not in pvt_id.csv; eval_train.csv and '
                           'eval_test.csv must split the private images', _remake(data_dir, meta))
            if pvt_rows[r[0]] != int(r[1]):
                raise _err(t.path, n, f'image {r[0]!r} has identity {r[1]} but pvt_id.csv line '
                           f'{pvt.line_of[r[0]]} gives {pvt_rows[r[0]]}', _remake(data_dir, meta))
    tr, te = ev['eval_train'], ev['eval_test']
    both = [r[0] for r in te.rows if r[0] in tr.line_of]
    if both:
        raise _err(te.path, te.line_of[both[0]], f'image {both[0]!r} is also in eval_train.csv '
                   f'(line {tr.line_of[both[0]]}; {len(both)} images are in both); the two must be '
                   'disjoint', _remake(data_dir, meta))
    lost = [r[0] for r in pvt.rows if r[0] not in tr.line_of and r[0] not in te.line_of]
    if lost:
        raise _err(pvt.path, pvt.line_of[lost[0]], f'image {lost[0]!r} is in neither eval_train.csv '
                   f'nor eval_test.csv ({len(lost)} such images); every private image must be in '
                   'one of them', _remake(data_dir, meta))
    for s, t in ev.items():
        present = {int(r[1]) for r in t.rows}
        missing = [i for i in first_pvt if i not in present]
        if missing:
            name, n, _ = first_pvt[missing[0]]
            raise _err(pvt.path, n, f'identity {missing[0]} (image {name!r}) has no image in '
                       f'{layout.SPLITS[s][0]} ({len(missing)} such identities); every private '
                       'identity must be in both eval_train.csv and eval_test.csv',
                       _remake(data_dir, meta))

    # the eval attribute tables repeat the private attribute rows
    pa = {r[0]: r for r in att['private'].rows}
    for s in ('eval_train', 'eval_test'):
        a = att[s]
        for r, n in zip(a.rows, a.lines):
            if r != pa[r[0]]:
                raise _err(a.path, n, f'attributes of {r[0]!r} differ from pvt_attri.csv line '
                           f'{att["private"].line_of[r[0]]}', _remake(data_dir, meta))
    return meta


# ------------------------------------------------------------------------------------- images

def decode_image(path, img_size):
    """Read one image as a uint8 HxWx3 array; DatasetError if unreadable or not img_size square."""
    from PIL import Image
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode != 'RGB':
                img = img.convert('RGB')
            arr = np.asarray(img, dtype=np.uint8)
    except FileNotFoundError:
        raise _err(path, None, 'image file is missing', _remake(path.parent.parent)) from None
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ... on bad files
        raise _err(path, None, f'image cannot be decoded ({type(e).__name__}: {e}); the file is '
                   'corrupt or truncated', 'restore it, or ' + _remake(path.parent.parent)) from None
    if arr.shape[:2] != (img_size, img_size):
        raise _err(path, None, f'image is {arr.shape[1]}x{arr.shape[0]}, but dataset.json says '
                   f'img_size {img_size} (expected {img_size}x{img_size})',
                   _remake(path.parent.parent))
    return arr


def check_images(data_dir, meta=None):
    """Decode every image listed in pub_id.csv and pvt_id.csv (progress bar)."""
    from tqdm import tqdm
    data_dir = Path(data_dir)
    if meta is None:
        meta = check_structure(data_dir)
    paths = []
    for split in ('public', 'private'):
        id_csv, _, folder = layout.SPLITS[split]
        t = _read_csv(data_dir / id_csv, data_dir, meta)
        paths += [data_dir / folder / r[0] for r in t.rows]
    for p in tqdm(paths, desc='decoding images', unit='img', mininterval=1.0, leave=False):
        decode_image(p, meta['img_size'])
    return meta


def check(data_dir, deep=True):
    """Structure checks and, if deep, decode every image. Returns dataset.json contents."""
    meta = check_structure(data_dir)
    if deep:
        check_images(data_dir, meta)
    return meta


def summary(data_dir, meta):
    c = meta.get('counts', {})
    parts = [f'{s} {c[s]["images"]} images/{c[s]["ids"]} ids' for s in layout.SPLITS if s in c]
    no_attr = meta.get('public_images_without_attributes', 0)
    return (f'OK {io.rel(data_dir)}: {meta["img_size"]}px, {len(meta["attributes"])} attributes, '
            f'source {meta.get("source", "?")}; ' + ', '.join(parts)
            + (f' ({no_attr} public images without attributes)' if no_attr else ''))


def _resolve(path):
    p = Path(path).expanduser()
    return p if p.is_absolute() or p.exists() else io.repo_path(p)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('data_dir', help='prepared dataset folder (relative to the working directory, '
                    'else to the repository root)')
    ap.add_argument('--deep', default='true', choices=['true', 'false'],
                    help='also decode every image (default true)')
    args = ap.parse_args(argv)
    data_dir = _resolve(args.data_dir)
    try:
        meta = check(data_dir, deep=args.deep == 'true')
    except DatasetError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(summary(data_dir, meta) + ('' if args.deep == 'true' else ' (images not decoded)'))
    strays = stray_files(data_dir)
    if strays:
        print(f'note: {len(strays)} file(s) in the image folders are not images and are ignored by '
              'every stage: ' + ', '.join(strays[:5]) + (' ...' if len(strays) > 5 else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
