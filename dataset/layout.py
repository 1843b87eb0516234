"""The on-disk layout every preparer writes and every stage reads.

    DIR/public/*.jpg  DIR/private/*.jpg
    pub_id.csv pvt_id.csv eval_train.csv eval_test.csv              (columns image,id)
    pub_attri.csv pvt_attri.csv eval_train_attri.csv eval_test_attri.csv
                                                  (columns image,<attribute names>; values 0/1)
    dataset.json   (image size, counts, attribute names, source, seed, fingerprint)

Public and private identities never overlap; eval_train/eval_test split every private
identity's images, so both hold every private identity.
"""
import hashlib
import json
import random
import time
from pathlib import Path

import numpy as np

from common import io

# split name -> (id csv, attribute csv, image folder)
SPLITS = {
    'public': ('pub_id.csv', 'pub_attri.csv', 'public'),
    'private': ('pvt_id.csv', 'pvt_attri.csv', 'private'),
    'eval_train': ('eval_train.csv', 'eval_train_attri.csv', 'private'),
    'eval_test': ('eval_test.csv', 'eval_test_attri.csv', 'private'),
}
CSV_FILES = [f for s in SPLITS.values() for f in s[:2]]
META = 'dataset.json'
EVAL_TEST_FRAC = 0.3   # share of each private identity's images held out for eval_test


def split_eval(private_rows, test_frac=EVAL_TEST_FRAC, seed=0):
    """Split private rows (name, id, ...) per identity; every identity lands in both splits.

    Deterministic: rows are sorted by name within an identity before a seeded shuffle.
    Identities with a single image cannot be in both splits and are dropped (reported).
    """
    by_id = {}
    for row in private_rows:
        by_id.setdefault(row[1], []).append(row)
    rng = random.Random(seed)
    train, test, dropped = [], [], []
    for pid in sorted(by_id):
        rows = sorted(by_id[pid], key=lambda r: r[0])
        if len(rows) < 2:
            dropped.append(pid)
            continue
        rng.shuffle(rows)
        n_test = min(len(rows) - 1, max(1, round(test_frac * len(rows))))
        test += rows[:n_test]
        train += rows[n_test:]
    return sorted(train), sorted(test), dropped


def _write_csv(path, header, rows):
    lines = [','.join(header)] + [','.join(str(v) for v in r) for r in rows]
    io.write_text(path, '\n'.join(lines) + '\n')


def write_tables(out, public, private, attr_names, *, img_size, source, seed,
                 test_frac=EVAL_TEST_FRAC, extra=None):
    """Write every CSV and dataset.json into `out` (the images must already be there).

    public/private: lists of (image_name, identity, attributes) with attributes a sequence of
    0/1 of len(attr_names) (empty when the dataset has none).
    """
    out = Path(out)
    pub_ids = {r[1] for r in public}
    pvt_ids = {r[1] for r in private}
    shared = pub_ids & pvt_ids
    if shared:
        raise ValueError(f'identities in both public and private: {sorted(shared)[:5]}')
    train, test, dropped = split_eval(private, test_frac, seed)
    if dropped:
        keep = set(dropped)
        private = [r for r in private if r[1] not in keep]
    tables = {'public': sorted(public), 'private': sorted(private),
              'eval_train': train, 'eval_test': test}
    for split, rows in tables.items():
        id_csv, attr_csv, _ = SPLITS[split]
        _write_csv(out / id_csv, ['image', 'id'], [(r[0], r[1]) for r in rows])
        _write_csv(out / attr_csv, ['image'] + list(attr_names),
                   [(r[0], *[int(a) for a in r[2]]) for r in rows])
    meta = {
        'img_size': int(img_size),
        'attributes': list(attr_names),
        'source': source,
        'seed': int(seed),
        'eval_test_frac': test_frac,
        'counts': {s: {'images': len(rows), 'ids': len({r[1] for r in rows})}
                   for s, rows in tables.items()},
        'dropped_private_ids_with_one_image': len(dropped),
        'created': time.strftime('%Y-%m-%d %H:%M:%S'),
        'fingerprint': fingerprint(out),
    }
    meta.update(extra or {})
    io.write_text(out / META, json.dumps(meta, indent=1) + '\n')
    return meta


def fingerprint(data_dir):
    """A short hash of the CSV tables: checkpoints record it to catch a swapped dataset."""
    h = hashlib.sha1()
    for name in CSV_FILES:
        p = Path(data_dir) / name
        if p.exists():
            h.update(p.read_bytes())
    return h.hexdigest()[:12]


def save_jpeg(array_or_image, path, quality=95):
    """uint8 HxWx3 array (or PIL image) -> JPEG."""
    from PIL import Image
    img = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(
        np.asarray(array_or_image, dtype=np.uint8))
    img.convert('RGB').save(path, format='JPEG', quality=quality)


def center_crop_resize(img, size):
    """PIL image -> centre square crop resized to size x size (bicubic, antialiased)."""
    from PIL import Image
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    img = img.convert('RGB').crop((left, top, left + s, top + s))
    if s != size:
        img = img.resize((size, size), Image.BICUBIC, reducing_gap=None)
    return img
