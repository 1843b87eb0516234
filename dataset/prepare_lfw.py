"""Prepare LFW in the layout of dataset/layout.py, from the official LFW files.

    python dataset/prepare_lfw.py --src LFW_DIR                  # paper: 128 px -> dataset/lfw128
    python dataset/prepare_lfw.py --preset lfw-cpu               # ../shared/data/lfw, 32 px -> dataset/lfw32

--src holds (directly or a level or two down):
  * the people folder of an LFW download, one folder per person with files
    <Person_Name>_<NNNN>.jpg (lfw/, lfw-deepfunneled/, lfw_funneled/ ...; the single such folder
    is used, or name it with --people_dir),
  * lfw_attributes.txt (Kumar et al.'s attribute scores; or --attr_file PATH): line 1 a `#`
    comment, line 2 `#<TAB>person<TAB>imagenum<TAB>` and the 73 attribute names, then one
    tab-separated row per image: person name, image number, 73 scores. Score > 0 becomes 1.

Without the attribute file, --no_attributes true writes attribute CSVs with only the image
column and dataset.json "attributes": [] (the utility metrics are then skipped).

Attributes (--attributes, comma-separated LFW names; '_' may stand for a space): the paper uses
"10 of the 73" LFW attributes without naming them, so the default ten are OUR choice: Male,
Smiling, Eyeglasses, Wearing Hat, Mouth Slightly Open, No Beard, Gray Hair, Brown Hair, Bald,
Senior -- visible, well-defined face attributes that are present in 11-92 % of the private
images of the real file (Blond Hair, Black, Asian, Youth and Sunglasses are under 9 % there, so
their eval_test AUCs would rest on a handful of positives). The CSV columns use the names with
spaces replaced by '_' (Wearing_Hat).

Faces: LFW images are 250x250 with the face in the middle; the central --crop x --crop region
(150) is cut out and resized to --img_size (128) as JPEG under its original name
(private/George_W_Bush_0001.jpg). --out defaults to dataset/lfw<img_size>.

Split: identities are numbered 0.. in the alphabetical order of the person folders (names in
dataset.json "identity_names"). Private = the --n_private (paper: 38) people with the most
images that have an attribute row (ties: alphabetical); public = everyone else with at least
one image. layout.split_eval splits the private images into eval_train/eval_test.
--max_public caps the public images (0 = all): every public person with attribute rows is kept
(the target net trains on them), then whole people, the most images first (ties: alphabetical),
while they fit.

Images without an attribute row (LFW's attribute file covers only some people; the real one
only the 62 people with 19 or more images): a PUBLIC one is kept -- everything the attacker
trains on public faces (GAN prior, amortizer, decoder, the attacker's identity model) uses it --
and has an id row in pub_id.csv but no row in pub_attri.csv; dataset.json
"public_images_without_attributes" counts them (validate.py accepts exactly that many missing
pub_attri.csv rows) and the loader gives them NaN attributes, so a stage that trains on
attributes takes `split.with_attrs()` (the target net: the public images with attribute rows).
A private image without a row is dropped (count printed and kept in dataset.json): the utility
metrics need every private image's attributes. An attribute row without an image is ignored
(count printed); a repeated attribute row keeps the first (count printed). A failed run leaves
no output folder. Relative --src/--people_dir/--attr_file are looked up from the working
directory first, then from the repository root; --out is relative to the repository root.

Presets: `lfw-cpu` = 32 px, 38 private people, the whole public set (10,749 images of 5,711
people from the real LFW: fewer than celeba-cpu's 13,082 public images, so no cap is needed).
32 px, not 64: on this machine's CPU one training step at 64 px costs 2.8x (target net), 3.6x
(generator) and 5x (critic) the 32 px step, and the celeba-cpu pipeline at 32 px already takes
1 h 50 min, so 64 px would need 5-7 h, far over a 2 h 30 min budget. `paper-lfw` = the
paper's 128 px / 38 private (the defaults), for GPUs.
"""

import difflib
import json
import os
import re
import time
from collections import Counter

from common import config, io
from dataset import layout
from dataset.prepare_celeba import (PrepareError, convert_images, find_file, out_dir,
                                    resolve_input, walk_dirs)
from dataset.validate import check, summary

DEFAULT_ATTRIBUTES = ('Male,Smiling,Eyeglasses,Wearing Hat,Mouth Slightly Open,No Beard,Gray Hair,'
                      'Brown Hair,Bald,Senior')   # our choice: the paper does not name its ten
HP = dict(
    src='',                 # folder with the LFW download (required)
    people_dir='',          # the folder of person folders ('' = found under src)
    attr_file='',           # lfw_attributes.txt ('' = found under src)
    out='',                 # output folder (relative to the repository root; '' = dataset/lfw<img_size>)
    img_size=128,           # paper: 128x128 LFW faces
    crop=150,               # central crop of the 250x250 LFW image before resizing (0 = none)
    n_private=38,           # paper: 38 private identities (the ones with the most images)
    max_public=0,           # cap on public images (0 = all); people with attributes are kept first
    attributes=DEFAULT_ATTRIBUTES,  # comma-separated LFW attribute names
    no_attributes=False,    # true: no attribute file; utility metrics are skipped
    eval_test_frac=0.3,     # share of each private identity's images held out for eval_test
    workers=2,              # processes decoding/resizing (1 = in this process)
    overwrite=False,        # replace an existing --out folder
)
# what needs more than "finite and >= 0" (common/config.py): counts, learning rates, fractions
RANGES = dict(img_size='>=1', n_private='>=1', eval_test_frac='(0,1)')
SHARED = '../shared/data/lfw'
PRESETS = {
    'tiny': dict(out='dataset/lfw_tiny', img_size=32, n_private=5),
    # CPU: 32 px (64 px steps cost 3-5x; see the docstring), all public images -> dataset/lfw32
    'lfw-cpu': dict(src=SHARED, img_size=32, n_private=38, max_public=0),
    # the paper's LFW: 128 px, 38 private identities -> dataset/lfw128 (GPU)
    'paper-lfw': dict(img_size=128, n_private=38, max_public=0),
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


def select(images, attrs, n_private, max_public=0, attr_path=None):
    """Which images go where. images: {(person, num): path}; attrs: {(person, num): values} of
    the images with an attribute row (all of them without an attribute file). Returns a dict:
    people (sorted names = identity numbers), pid, private / public (sorted keys), no_attr (the
    public keys without a row), single (private ids dropped for having one image),
    dropped_private (private images without a row), capped (public images left out by
    max_public), n_with_attrs (people with attribute rows)."""
    people = sorted({k[0] for k in images})
    pid = {p: i for i, p in enumerate(people)}
    # private: among the people with attribute rows (the utility metrics need them), the most
    # images with a row first; ties: smaller id = alphabetical
    counts = Counter(pid[k[0]] for k in attrs)
    if n_private > len(counts):
        raise PrepareError(f'--n_private {n_private}: only {len(counts)} people have attribute '
                           f'rows in {attr_path}; choose --n_private {len(counts)} or less'
                           if attr_path else f'--n_private {n_private}: the data has only '
                           f'{len(counts)} people')
    if n_private >= len(people):
        raise PrepareError(f'--n_private {n_private} leaves no public identity: the data has '
                           f'only {len(people)} people; choose --n_private below {len(people)}')
    private = set(sorted(counts, key=lambda i: (-counts[i], i))[:n_private])
    single = {i for i in private if counts[i] < 2}
    if single:
        print(f'note: {len(single)} of the {n_private} private people have one image and cannot '
              'be split into eval_train/eval_test; dropped')
    pvt_keys = sorted(k for k in attrs if pid[k[0]] in private and pid[k[0]] not in single)
    dropped_pvt = sum(1 for k in images if pid[k[0]] in private and k not in attrs)
    if dropped_pvt:
        print(f'note: {dropped_pvt} images of private people have no attribute row; dropped (the '
              "utility metrics need every private image's attributes)")
    pub_keys = sorted(k for k in images if pid[k[0]] not in private)
    pub_people = Counter(pid[k[0]] for k in pub_keys)
    capped = 0
    if max_public and len(pub_keys) > max_public:
        with_attr = Counter(pid[k[0]] for k in pub_keys if k in attrs)
        keep, total = set(), 0
        for i in sorted(pub_people, key=lambda i: (not with_attr[i], -pub_people[i], i)):
            if with_attr[i] or total + pub_people[i] <= max_public:
                keep.add(i)
                total += pub_people[i]
        capped = len(pub_keys) - total
        pub_keys = [k for k in pub_keys if pid[k[0]] in keep]
        print(f'note: --max_public {max_public}: {len(pub_keys)} public images of {len(keep)} '
              f'people kept, {capped} left out')
    no_attr = [k for k in pub_keys if k not in attrs]
    return dict(people=people, pid=pid, private=pvt_keys, public=pub_keys, no_attr=no_attr,
                single=single, dropped_private=dropped_pvt, capped=capped,
                n_with_attrs=len(counts))


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, stage=False, ranges=RANGES, description=__doc__)
    cfg.out = cfg.out or f'dataset/lfw{cfg.img_size}'
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
    unused_attr_rows = dup_rows = 0
    if attr_path:
        names, scores, dup_rows = read_attributes(attr_path)
        idx, attr_names = choose_attributes(cfg.attributes, names, attr_path)
        attrs = {k: tuple(int(scores[k][i] > 0) for i in idx) for k in images if k in scores}
        unused_attr_rows = sum(1 for k in scores if k not in images)
        if not attrs:
            raise PrepareError(f'no image of {people_dir} has a row in {attr_path}')
        if unused_attr_rows:
            print(f'note: {unused_attr_rows} rows of {attr_path.name} name images not in {people_dir}; ignored')
        if dup_rows:
            print(f'note: {dup_rows} repeated rows in {attr_path.name}; the first of each is used')
    else:
        attr_names = []
        attrs = {k: () for k in images}

    plan = select(images, attrs, cfg.n_private, cfg.max_public, attr_path)
    people, pid, pvt_keys, pub_keys, no_attr = (plan[k] for k in ('people', 'pid', 'private',
                                                                  'public', 'no_attr'))
    single, dropped_pvt, capped = plan['single'], plan['dropped_private'], plan['capped']
    if attr_names and len(no_attr) == len(pub_keys):
        raise PrepareError(f'no public image has a row in {attr_path}: the target net trains on '
                           f'the public images with attributes. Choose --n_private below '
                           f'{plan["n_with_attrs"]} (the people with attribute rows), or pass '
                           '--no_attributes true')
    if no_attr:
        print(f'note: {len(no_attr)} public images have no row in {attr_path.name}; kept without '
              f'attributes (GAN prior, amortizer, decoder, identity model); the target net trains '
              f'on the {len(pub_keys) - len(no_attr)} that have one')
    blank = (0,) * len(attr_names)

    with io.atomic_dir(out, overwrite=cfg.overwrite) as tmp:
        (tmp / 'public').mkdir()
        (tmp / 'private').mkdir()
        rows = {'public': [], 'private': []}
        jobs = []
        for split, keys in (('public', pub_keys), ('private', pvt_keys)):
            for k in keys:
                name = f'{k[0]}_{k[1]:04d}.jpg'
                rows[split].append((name, pid[k[0]], attrs.get(k, blank)))
                jobs.append((images[k], str(tmp / split / name), cfg.img_size, cfg.crop))
        convert_images(jobs, cfg.workers, desc=f'{cfg.img_size}px')
        meta = layout.write_tables(
            tmp, rows['public'], rows['private'], attr_names, img_size=cfg.img_size, source='lfw',
            seed=cfg.seed, test_frac=cfg.eval_test_frac, extra=dict(
                src=str(src), people_dir=str(people_dir),
                attr_file=str(attr_path) if attr_path else None,
                lfw_attributes=[names[i] for i in idx] if attr_path else [],
                crop=cfg.crop, n_private=cfg.n_private, max_public=cfg.max_public,
                selection='private: top n_private people by images with attribute rows, ties: '
                          'alphabetical; public: everyone else',
                dropped_private_ids_with_one_image=len(single),
                dropped_private_images_without_attributes=dropped_pvt,
                public_images_without_attributes=len(no_attr),
                public_images_with_attributes=len(pub_keys) - len(no_attr),
                public_images_left_out_by_max_public=capped,
                unused_attribute_rows=unused_attr_rows,
                identity_names=people))
        if no_attr:
            _drop_attribute_rows(tmp, meta, {f'{k[0]}_{k[1]:04d}.jpg' for k in no_attr})
        meta = check(tmp, deep=False)
    print(summary(out, meta))
    if not attr_names:
        print('no attributes (--no_attributes true): the utility (attribute) metrics will be '
              'skipped for this dataset')
    print(f'wrote {out} in {time.time() - t0:.1f}s')
    return meta


def _drop_attribute_rows(folder, meta, names):
    """Remove the rows of `names` from pub_attri.csv (images without attributes), then refresh
    dataset.json's fingerprint (it hashes the CSVs)."""
    path = folder / layout.SPLITS['public'][1]
    lines = path.read_text().splitlines()
    keep = lines[:1] + [line for line in lines[1:] if line.split(',', 1)[0] not in names]
    io.write_text(path, '\n'.join(keep) + '\n')
    meta['fingerprint'] = layout.fingerprint(folder)
    io.write_text(folder / layout.META, json.dumps(meta, indent=1) + '\n')


if __name__ == '__main__':
    main()
