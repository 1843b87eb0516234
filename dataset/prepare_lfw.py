"""Prepare LFW in the layout of dataset/layout.py, from the official LFW files.

    python dataset/prepare_lfw.py --src LFW_DIR --out dataset/lfw128

--src holds (directly or a level or two down):
  * the people folder of an LFW download, one folder per person with files
    <Person_Name>_<NNNN>.jpg (lfw/, lfw-deepfunneled/, lfw_funneled/ ...; the single such folder
    is used, or name it with --people_dir),
  * lfw_attributes.txt (Kumar et al.'s attribute scores; or --attr_file PATH): line 1 a `#`
    comment, line 2 `#<TAB>person<TAB>imagenum<TAB>` and the 73 attribute names, then one
    tab-separated row per image: person name, image number, 73 scores. Score > 0 becomes 1.

Without the attribute file, --no_attributes true writes attribute CSVs with only the image
column and dataset.json "attributes": [] (the utility metrics are then skipped).

Attributes (--attributes, comma-separated LFW names; '_' may stand for a space): the default ten
are the LFW counterparts of the CelebA attributes the paper evaluates: Male, Asian, White,
Black, Youth (LFW has no "Young"), Smiling, Eyeglasses, Black Hair, Blond Hair, Wearing Hat.
The CSV columns use the names with spaces replaced by '_' (Black_Hair).

Faces: LFW images are 250x250 with the face in the middle; the central --crop x --crop region
(150) is cut out and resized to --img_size (128) as JPEG under its original name
(private/George_W_Bush_0001.jpg).

Split: identities are numbered 0.. in the alphabetical order of the person folders (names in
dataset.json "identity_names"). Private = the --n_private (paper: 38) people with the most
images (ties: alphabetical); public = everyone else with at least one image. layout.split_eval
splits the private images into eval_train/eval_test.

Images and labels that do not match: an image without an attribute row is dropped (count
printed and kept in dataset.json: LFW's attribute file does not cover every image); an
attribute row without an image is ignored (count printed); a repeated attribute row keeps the
first (count printed). A failed run leaves no output folder. Relative --src/--people_dir/
--attr_file are looked up from the working directory first, then from the repository root;
--out is relative to the repository root.
"""

import difflib
import os
import re
import time
from collections import Counter

from common import config, io
from dataset import layout
from dataset.prepare_celeba import (PrepareError, convert_images, find_file, out_dir,
                                    resolve_input, select_private, walk_dirs)
from dataset.validate import check, summary

DEFAULT_ATTRIBUTES = ('Male,Asian,White,Black,Youth,Smiling,Eyeglasses,Black Hair,Blond Hair,'
                      'Wearing Hat')
HP = dict(
    src='',                 # folder with the LFW download (required)
    people_dir='',          # the folder of person folders ('' = found under src)
    attr_file='',           # lfw_attributes.txt ('' = found under src)
    out='dataset/lfw128',   # output folder (relative to the repository root)
    img_size=128,           # paper: 128x128 LFW faces
    crop=150,               # central crop of the 250x250 LFW image before resizing (0 = none)
    n_private=38,           # paper: 38 private identities (the ones with the most images)
    attributes=DEFAULT_ATTRIBUTES,  # comma-separated LFW attribute names
    no_attributes=False,    # true: no attribute file; utility metrics are skipped
    eval_test_frac=0.3,     # share of each private identity's images held out for eval_test
    workers=2,              # processes decoding/resizing (1 = in this process)
    overwrite=False,        # replace an existing --out folder
)
# what needs more than "finite and >= 0" (common/config.py): counts, learning rates, fractions
RANGES = dict(img_size='>=1', n_private='>=1', eval_test_frac='(0,1)')
PRESETS = {
    'tiny': dict(out='dataset/lfw_tiny', img_size=32, n_private=5),
    'lfw-cpu': dict(out='dataset/lfw64', img_size=64),
}
ATTR_FILE = 'lfw_attributes.txt'
IMAGE_RE = re.compile(r'^(.+)_(\d{4})\.(jpg|jpeg|png)$', re.IGNORECASE)


def _is_people_dir(d, probe=20):
    """A folder whose sub-folders hold <Folder>_NNNN.jpg files (checks the first few)."""
    try:
        subs = [e for e in os.scandir(d) if e.is_dir()][:probe]
    except OSError:
        return False
    for e in subs:
        try:
            for f in os.scandir(e.path):
                m = IMAGE_RE.match(f.name)
                if m and m.group(1) == e.name:
                    return True
        except OSError:
            pass
    return False


def find_people_dir(src):
    hits = [d for d in walk_dirs(src, 2) if _is_people_dir(d)]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise PrepareError(f'no LFW people folder (one folder per person holding '
                           f'<Person_Name>_0001.jpg ...) under {src}; extract lfw.tgz / '
                           'lfw-deepfunneled.tgz there or name the folder with --people_dir')
    raise PrepareError(f'{len(hits)} LFW people folders under {src}: '
                       + ', '.join(str(h) for h in hits) + '; choose one with --people_dir')


def list_people(people_dir):
    """{(folder name, image number): file path}; files not named <Folder>_NNNN.jpg are ignored."""
    images, other = {}, 0
    for e in sorted(os.scandir(people_dir), key=lambda e: e.name):
        if not e.is_dir() or e.name.startswith('.'):
            continue
        for f in os.scandir(e.path):
            m = IMAGE_RE.match(f.name)
            if f.is_file() and m and m.group(1) == e.name:
                images[(e.name, int(m.group(2)))] = f.path
            else:
                other += 1
    if other:
        print(f'note: {other} files in person folders are not named <Folder>_NNNN.jpg; ignored')
    return images


def read_attributes(path):
    """lfw_attributes.txt -> (names, {(folder name, imagenum): tuple of floats}, duplicates)."""
    try:
        lines = path.read_text(encoding='utf-8', errors='replace').splitlines()
    except OSError as e:
        raise PrepareError(f'{path}: cannot be read ({e})') from None
    names, rows, dups = None, {}, 0
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if line.startswith('#'):
            f = [x.strip() for x in line.lstrip('#').split('\t')]
            f = [x for x in f if x]
            if names is None and f[:2] == ['person', 'imagenum']:
                names = f[2:]
                if not names or len(set(names)) != len(names):
                    raise PrepareError(f'{path}, line {n}: attribute names are missing or repeat')
            continue
        if names is None:
            raise PrepareError(f'{path}, line {n}: data before the header line '
                               '"#<TAB>person<TAB>imagenum<TAB>names..." (official lfw_attributes.txt '
                               'starts with a comment line and that header)')
        f = line.rstrip('\r\n').split('\t')
        if len(f) != len(names) + 2:
            raise PrepareError(f'{path}, line {n}: {len(f)} tab-separated fields, expected '
                               f'{len(names) + 2} (person, imagenum and {len(names)} scores)')
        try:
            key = (f[0].strip().replace(' ', '_'), int(f[1]))
            vals = tuple(float(x) for x in f[2:])
        except ValueError as e:
            raise PrepareError(f'{path}, line {n}: {e} (imagenum must be an integer, scores numbers)') from None
        if key in rows:
            dups += 1
            continue
        rows[key] = vals
    if names is None:
        raise PrepareError(f'{path}: no header line "#<TAB>person<TAB>imagenum<TAB>..."; is it the '
                           'official lfw_attributes.txt?')
    return names, rows, dups


def choose_attributes(wanted, names, path):
    """Indices and CSV names of the requested attributes (names compared with '_' as ' ')."""
    norm = {n.lower(): i for i, n in enumerate(names)}
    idx = []
    for w in [w.strip() for w in wanted.split(',') if w.strip()]:
        key = w.replace('_', ' ').lower()
        if key not in norm:
            near = difflib.get_close_matches(w.replace('_', ' '), names, n=4, cutoff=0.5)
            raise PrepareError(f'--attributes: {w!r} is not an attribute of {path}'
                               + (f'; close matches: {", ".join(near)}' if near else '')
                               + f'. The file has {len(names)}, listed on its second line.')
        if norm[key] in idx:
            raise PrepareError(f'--attributes: {w!r} is given twice')
        idx.append(norm[key])
    if not idx:
        raise PrepareError('--attributes is empty; name at least one, or pass --no_attributes true')
    return idx, [names[i].replace(' ', '_') for i in idx]


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, stage=False, ranges=RANGES, description=__doc__)
    cfg.show('prepare_lfw')
    t0 = time.time()
    if not cfg.src:
        raise PrepareError('--src is required: the folder holding the LFW people folder '
                           '(lfw-deepfunneled/ ...) and lfw_attributes.txt')
    if cfg.img_size < 1 or cfg.crop < 0:
        raise PrepareError('--img_size must be positive and --crop 0 or more')
    src = resolve_input(cfg.src)
    if not src.is_dir():
        raise PrepareError(f'--src {cfg.src}: no such folder ({src})')
    out = out_dir(cfg)
    people_dir = resolve_input(cfg.people_dir, src) if cfg.people_dir else find_people_dir(src)
    if not people_dir.is_dir():
        raise PrepareError(f'--people_dir {cfg.people_dir}: no such folder ({people_dir})')
    attr_path = None
    if not cfg.no_attributes:
        attr_path = resolve_input(cfg.attr_file, src) if cfg.attr_file else find_file(src, ATTR_FILE, '--attr_file')
        if attr_path is None or not attr_path.is_file():
            raise PrepareError(f'{attr_path or src / ATTR_FILE} not found: the LFW attribute file '
                               f'{ATTR_FILE} is needed for the attribute (utility) metrics. Put it in '
                               '--src or give --attr_file PATH; or pass --no_attributes true to prepare '
                               'LFW without attributes (utility metrics are then skipped).')
    print(f'people {people_dir}' + (f'\nattributes {attr_path}' if attr_path else ''))

    images = list_people(people_dir)
    if not images:
        raise PrepareError(f'no <Person_Name>_NNNN.jpg images in {people_dir}')
    dropped_no_attr = unused_attr_rows = dup_rows = 0
    if attr_path:
        names, scores, dup_rows = read_attributes(attr_path)
        idx, attr_names = choose_attributes(cfg.attributes, names, attr_path)
        keys = sorted(k for k in images if k in scores)
        dropped_no_attr = len(images) - len(keys)
        unused_attr_rows = sum(1 for k in scores if k not in images)
        attrs = {k: tuple(int(scores[k][i] > 0) for i in idx) for k in keys}
        if dropped_no_attr:
            print(f'note: {dropped_no_attr} images have no row in {attr_path.name}; dropped')
        if unused_attr_rows:
            print(f'note: {unused_attr_rows} rows of {attr_path.name} name images not in {people_dir}; ignored')
        if dup_rows:
            print(f'note: {dup_rows} repeated rows in {attr_path.name}; the first of each is used')
    else:
        keys, attr_names = sorted(images), []
        attrs = {k: () for k in keys}
    if not keys:
        raise PrepareError(f'no image of {people_dir} has a row in {attr_path}')

    people = sorted({k[0] for k in keys})
    pid = {p: i for i, p in enumerate(people)}
    counts = Counter(pid[k[0]] for k in keys)
    private = select_private(counts, cfg.n_private)   # ties: smaller id = alphabetical
    single = {i for i in private if counts[i] < 2}
    if single:
        print(f'note: {len(single)} of the {cfg.n_private} private people have one image and cannot '
              'be split into eval_train/eval_test; dropped')
        keys = [k for k in keys if pid[k[0]] not in single]

    with io.atomic_dir(out, overwrite=cfg.overwrite) as tmp:
        (tmp / 'public').mkdir()
        (tmp / 'private').mkdir()
        rows = {'public': [], 'private': []}
        jobs = []
        for k in keys:
            split = 'private' if pid[k[0]] in private else 'public'
            name = f'{k[0]}_{k[1]:04d}.jpg'
            rows[split].append((name, pid[k[0]], attrs[k]))
            jobs.append((images[k], str(tmp / split / name), cfg.img_size, cfg.crop))
        convert_images(jobs, cfg.workers, desc=f'{cfg.img_size}px')
        layout.write_tables(tmp, rows['public'], rows['private'], attr_names, img_size=cfg.img_size,
                            source='lfw', seed=cfg.seed, test_frac=cfg.eval_test_frac, extra=dict(
                                src=str(src), people_dir=str(people_dir),
                                attr_file=str(attr_path) if attr_path else None,
                                lfw_attributes=[names[i] for i in idx] if attr_path else [],
                                crop=cfg.crop, n_private=cfg.n_private,
                                selection='top n_private people by image count, ties: alphabetical',
                                dropped_private_ids_with_one_image=len(single),
                                dropped_images_without_attributes=dropped_no_attr,
                                identity_names=people))
        meta = check(tmp, deep=False)
    print(summary(out, meta))
    if not attr_names:
        print('no attributes (--no_attributes true): the utility (attribute) metrics will be '
              'skipped for this dataset')
    print(f'wrote {out} in {time.time() - t0:.1f}s')
    return meta


if __name__ == '__main__':
    main()
