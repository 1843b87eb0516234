"""The one data loader every stage uses.

`load(data_dir, split)` reads a split of the prepared layout (see dataset/layout.py) into memory:
uint8 images decoded once (and cached on disk under DIR/.cache, keyed by the files' names,
sizes, modification times and a hash of their bytes, so a file changed in place is decoded
again; later stages start in a second), identity labels and attributes.
`content_digest(data_dir)` hashes the CSV tables and every image's bytes: checkpoints and
feature files record it, so other images under the same CSVs are another dataset.
Batches are index tensors over that memory, so no stage decodes an image twice.
"""
import csv
import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common import io
from dataset import layout
from dataset.validate import DatasetError, check_structure, decode_image, list_images  # noqa: F401

_MEMO = {}   # (resolved dir, folder) -> (names, uint8 tensor); one decode per process


class Split:
    """A split held in memory.

    images: uint8 N x 3 x S x S; ids: raw identity numbers; labels: 0..n_ids-1 over the
    identities of the split's side (public or private, so eval_train and eval_test agree);
    attrs: float N x A (0/1); names: image file names.

    A public split may hold images without an attribute row (LFW: Kumar et al.'s file covers
    only some people; dataset.json "public_images_without_attributes"). Their attribute values
    are NaN internally; `has_attrs` marks the images with a row, `with_attrs()` is the subset
    that has them (what a stage that trains on attributes uses), and reading `attrs` of a split
    that still holds attribute-less images raises DatasetError instead of handing out NaNs.
    """

    def __init__(self, name, names, images, ids, id_list, attrs, attr_names):
        self.name, self.names, self.images = name, list(names), images
        self.ids = torch.as_tensor(ids, dtype=torch.long)
        self.id_list = list(id_list)
        index = {pid: i for i, pid in enumerate(self.id_list)}
        self.labels = torch.tensor([index[int(i)] for i in self.ids.tolist()], dtype=torch.long)
        self.attrs = attrs
        self.attr_names = list(attr_names)

    @property
    def attrs(self):
        if self._partial:
            n = int((~self.has_attrs).sum())
            raise DatasetError(f'the {self.name} split has {n} of {len(self)} images without an '
                               'attribute row (dataset.json "public_images_without_attributes"); a '
                               'stage that trains or scores on attributes must use '
                               'split.with_attrs(), the images that carry them')
        return self._attrs

    @attrs.setter
    def attrs(self, value):
        self._attrs = value
        self._partial = bool(value.numel()) and bool(torch.isnan(value).any())

    @property
    def has_attrs(self):
        """bool N: the image has an attribute row (all True when the dataset has no attributes)."""
        return ~torch.isnan(self._attrs).any(1)

    def with_attrs(self):
        """The images that have an attribute row (the split itself when all have one)."""
        if not self._partial:
            return self
        return self.subset(torch.nonzero(self.has_attrs.cpu()).flatten())

    def __len__(self):
        return len(self.names)

    @property
    def n_ids(self):
        return len(self.id_list)

    def subset(self, idx):
        idx = torch.as_tensor(idx, dtype=torch.long)
        out = Split.__new__(Split)
        out.name, out.id_list, out.attr_names = self.name, self.id_list, self.attr_names
        out.names = [self.names[i] for i in idx.tolist()]
        out.images, out.ids, out.labels, out.attrs = (self.images[idx], self.ids[idx],
                                                      self.labels[idx], self._attrs[idx])
        return out

    def to(self, device):
        self.images, self.labels, self.attrs = (t.to(device) for t in (self.images, self.labels,
                                                                         self._attrs))
        return self

    def x(self, idx=None):
        """Float images in [0, 1] (on the split's device)."""
        imgs = self.images if idx is None else self.images[idx]
        return imgs.float().div_(255)


def data_path(data_dir):
    p = Path(data_dir).expanduser()
    if not p.is_absolute() and not p.exists():
        p = io.repo_path(data_dir)       # relative to the repo root when not found from the cwd
    return p.resolve()


def load_meta(data_dir):
    """Structural validation (fast) and dataset.json; a DatasetError (one line `error: ...`,
    exit status 2 when uncaught) names the file and the fix."""
    return check_structure(data_path(data_dir))


def _read_csv(file):
    with open(file, newline='') as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def load_labels(data_dir, split):
    """The tables of one split without its images: (names, ids, attrs N x A float, attr names).

    An image without an attribute row (allowed in public when dataset.json declares
    "public_images_without_attributes") gets NaN attributes."""
    root = data_path(data_dir)
    id_csv, attr_csv, _ = layout.SPLITS[split]
    _, rows = _read_csv(root / id_csv)
    names = [r[0] for r in rows]
    ids = [int(r[1]) for r in rows]
    head, arows = _read_csv(root / attr_csv)
    amap = {r[0]: r[1:] for r in arows}
    missing = [None] * (len(head) - 1)
    if len(amap) == len(names):
        table = [amap[n] for n in names]
    else:
        table = [amap.get(n, missing) for n in names]
    attrs = torch.tensor(np.array(table, dtype=np.float32).reshape(len(names), len(head) - 1))
    return names, ids, attrs, head[1:]


def load(data_dir, split, device='cpu', meta=None):
    """Load one split ('public', 'private', 'eval_train', 'eval_test') into memory."""
    root = data_path(data_dir)
    meta = meta or load_meta(root)
    folder = layout.SPLITS[split][2]
    names, ids, attrs, attr_names = load_labels(root, split)
    side_csv = layout.SPLITS['public' if folder == 'public' else 'private'][0]
    _, side_rows = _read_csv(root / side_csv)
    id_list = sorted({int(r[1]) for r in side_rows})
    images = _images(root, folder, names, meta['img_size'])
    return Split(split, names, images, ids, id_list, attrs, attr_names).to(device)


def _images(root, folder, names, img_size):
    """uint8 N x 3 x S x S for `names`, from the memo, the disk cache, or by decoding."""
    all_names, all_images = _folder_images(root, folder, img_size)
    pos = {n: i for i, n in enumerate(all_names)}
    return all_images[torch.tensor([pos[n] for n in names], dtype=torch.long)]


def _folder_images(root, folder, img_size):
    key = (str(root), folder)
    if key in _MEMO:
        return _MEMO[key]
    files = list_images(root / folder)     # validate.py's listing: non-images are ignored
    sig = hashlib.sha1(str(img_size).encode())
    for f in files:
        st = os.stat(root / folder / f)
        sig.update(f'{f}:{st.st_size}:{st.st_mtime_ns};'.encode())
    # the bytes too (0.15 s for celeba32's 16k images, 1 s from a cold disk): a file changed in
    # place with the same size and time is not hidden by the cache
    sig.update(folder_digest(root, folder, files).encode())
    sig = sig.hexdigest()
    cache = root / '.cache' / f'{folder}_u8.pt'
    if cache.exists():
        try:
            c = torch.load(cache, weights_only=True)
            if c.get('sig') == sig:
                _MEMO[key] = (c['names'], c['images'])
                return _MEMO[key]
        except Exception:
            pass    # a stale or broken cache is rebuilt below
    arr = np.empty((len(files), img_size, img_size, 3), dtype=np.uint8)
    for i, f in enumerate(tqdm(files, desc=f'decode {folder}', mininterval=1, leave=False)):
        arr[i] = decode_image(root / folder / f, img_size)
    images = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
    try:
        io.save_torch({'sig': sig, 'names': files, 'images': images}, cache)
    except OSError as e:   # a read-only dataset still loads, only slower next time
        print(f'note: could not write the image cache {cache}: {e}')
    _MEMO[key] = (files, images)
    return _MEMO[key]


def folder_digest(root, folder, files=None):
    """sha1 of the names and bytes of a folder's images (once per process)."""
    key = (str(root), folder, 'digest')
    if key not in _MEMO:
        p = Path(root) / folder
        files = files if files is not None else (list_images(p) if p.is_dir() else [])
        h = hashlib.sha1()
        for f in files:
            with open(p / f, 'rb') as fh:
                b = fh.read()
            h.update(f'{f}:{len(b)};'.encode())
            h.update(b)
        _MEMO[key] = h.hexdigest()
    return _MEMO[key]


def content_digest(data_dir):
    """A short hash of a dataset's content: every CSV table and the bytes of every image in
    public/ and private/ (dataset.json's fingerprint covers the CSVs only). Once per process."""
    root = data_path(data_dir)
    key = (str(root), 'content')
    if key not in _MEMO:
        h = hashlib.sha1()
        for name in layout.CSV_FILES:
            p = root / name
            if p.exists():
                h.update(f'{name};'.encode())
                h.update(p.read_bytes())
        for folder in sorted({s[2] for s in layout.SPLITS.values()}):
            h.update(f'{folder}:{folder_digest(root, folder)};'.encode())
        _MEMO[key] = h.hexdigest()[:16]
    return _MEMO[key]


def holdout(split, frac=0.1, seed=0):
    """Deterministic (train_idx, heldout_idx) of a split, by a seeded permutation."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(split), generator=g)
    n_held = max(1, int(round(frac * len(split))))
    return perm[n_held:].sort().values, perm[:n_held].sort().values


def batches(n, batch_size, shuffle=False, generator=None, drop_last=False):
    """Index tensors covering range(n)."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for i in range(0, stop, batch_size):
        yield order[i:i + batch_size]


def per_identity(split, k, seed=0):
    """Indices of at most k images per identity (a fixed, seeded choice): evaluation subsets."""
    if k <= 0:
        return torch.arange(len(split))
    g = torch.Generator().manual_seed(seed)
    keep = []
    labels = split.labels.cpu()
    for lab in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == lab).flatten()
        keep.append(idx[torch.randperm(len(idx), generator=g)[:k]])
    return torch.cat(keep).sort().values


def augment(x, generator=None, flip=True, shift=0, scale=0.0, rotate=0.0, brightness=0.0):
    """Batch augmentation without a Python loop over samples: random horizontal flips, and one
    random affine warp per image (translation up to `shift` pixels, zoom by up to +-`scale`,
    rotation up to +-`rotate` degrees; border pixels repeat) and brightness by up to
    +-`brightness` (relative)."""
    n, dev = x.shape[0], x.device

    def uniform(lo, hi):
        return (lo + (hi - lo) * torch.rand(n, generator=generator)).to(dev)

    if flip:
        mask = (torch.rand(n, generator=generator) < 0.5).to(dev).view(n, 1, 1, 1)
        x = torch.where(mask, x.flip(3), x)
    if shift > 0 or scale > 0 or rotate > 0:
        s = x.shape[-1]
        ang = uniform(-rotate, rotate) * (torch.pi / 180)
        zoom = 1 / uniform(1 - scale, 1 + scale)
        t = 2 * shift / s
        theta = torch.stack([
            torch.stack([zoom * torch.cos(ang), -zoom * torch.sin(ang), uniform(-t, t)], 1),
            torch.stack([zoom * torch.sin(ang), zoom * torch.cos(ang), uniform(-t, t)], 1)], 1)
        grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
        x = torch.nn.functional.grid_sample(x, grid, mode='bilinear', padding_mode='border',
                                            align_corners=False)
    if brightness > 0:
        x = (x * uniform(1 - brightness, 1 + brightness).view(n, 1, 1, 1)).clamp(0, 1)
    return x
