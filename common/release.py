"""The release API: which protections exist, what their names mean, where their released
features live and how every attack reads them.

A protection is one file. Its script declares itself with a literal dict at the top level:

    PROTECTION = dict(prefix='noise_s', knob='sigma', label='Gaussian noise (sigma)', style='D--',
                      own_encoder=False, randomised=True, order=30,
                      make='Baselines/noise.py --sigma {value} --split {split}')

prefix + knob value is the protection's name (noise_s3); own_encoder: it trains its own Enc and
f (params/<name>.pt, attacked through them); randomised: a repeated query gives a new draw (the
paper's A3 applies; the script then has `repeat_releases(obj, f0, names, k)`); make: the command
that writes its release of a split; points / full / sweep: the knob values the Makefile runs
per preset (common/deps.py turns them into rules). The declarations are read with `ast` from
Crafter_protection/*.py and Baselines/*.py (common/deps.py), so this module imports no stage.
"""
import re
import sys
from types import SimpleNamespace

import torch

import metrics
from common import ckpt, config, deps, io, runtime
from common.train import encode, predict
from dataset import loader

_REGISTRY = {}


def registry():
    """{prefix: declaration} of every protection file (plus 'module' and 'file')."""
    if not _REGISTRY:
        _REGISTRY.update(deps.declarations())
    return _REGISTRY


def parse(name):
    """(declaration, knob value) of a protection name; (None, 0.0) for 'none' or an unknown name."""
    for prefix in sorted(registry(), key=len, reverse=True):
        m = re.fullmatch(re.escape(prefix) + r'([-+0-9.eE]+)', name)
        if m:
            return registry()[prefix], float(m.group(1))
    return None, 0.0


def name(prefix, value):
    return f'{prefix}{float(value):g}'


def family(protection):
    """(prefix, knob value) for sorting and the figure's curves; ('none', 0.0) for none."""
    spec, value = parse(protection)
    return (spec['prefix'], value) if spec else (protection, 0.0)


def order_key(protection):
    spec, value = parse(protection)
    rank = -1 if protection == 'none' else spec['order'] if spec else 10 ** 6
    return rank, '' if spec else protection, value


def own_encoder(protection):
    spec, _ = parse(protection)
    return bool(spec and spec['own_encoder'])


def randomised(protection):
    spec, _ = parse(protection)
    return bool(spec and spec['randomised'])


def enc_name(protection):
    """The target-net checkpoint (Enc, f) a protection releases features with."""
    return f'{protection}.pt' if own_encoder(protection) else 'enc.pt'


def amor_name(protection, gan='gan.pt'):
    """The amortizer the white-box attacker uses against a protection (trained for its Enc)."""
    base = 'amor.pt' if gan == 'gan.pt' else gan.replace('gan', 'amor', 1)
    if not own_encoder(protection):
        return base
    return f'amor_{protection}.pt' if gan == 'gan.pt' else f'{base[:-3]}_{protection}.pt'


def make_command(cfg, protection, split):
    """The command that writes a protection's release of a split (for 'missing input' messages)."""
    spec, value = parse(protection)
    if spec is None:
        return f'no protection file declares {protection!r} (PROTECTION in {" or ".join(deps.PROTECTION_FOLDERS)}/*.py)'
    return ' '.join(p for p in ('python', spec['make'].format(value=f'{value:g}', split=split),
                                cfg.overrides_for_command()) if p)


def run_dir(cfg, protection):
    return io.repo_path(cfg.crafted_dir) / runtime.run_tag(cfg) / (cfg.get('run') or protection)


def feature_file(cfg, protection, split):
    return run_dir(cfg, protection) / f'features_{split}.pt'


def select(split, cfg):
    """The images of a split a stage works on: n_per_id per identity and/or the first n_images."""
    split = split.subset(loader.per_identity(split, cfg.n_per_id, cfg.seed))
    if cfg.n_images > 0:
        split = split.subset(torch.arange(min(cfg.n_images, len(split))))
    return split


def protected_features(cfg, protection, split, Enc, device):
    """Released features of the images of `split` under `protection` ('none' = raw Enc(x)).
    The split must only hold images the protection released (select them with `covered`)."""
    if protection == 'none':
        with torch.no_grad():
            return torch.cat([Enc(split.x(b.to(device))) for b in loader.batches(len(split), 256)])
    file = feature_file(cfg, protection, split.name)
    return ckpt.aligned_features(file, split, make_command(cfg, protection, split.name)).to(device)


def covered(cfg, protection, split):
    """The part of `split` a protection's feature file covers (all of it for 'none')."""
    if protection == 'none':
        return split
    file = feature_file(cfg, protection, split.name)
    names = set(ckpt.load_features(file, make_command(cfg, protection, split.name))['names'])
    return split.subset([i for i, n in enumerate(split.names) if n in names])


def public_queries(cfg, protection, public, n_images, n_per_id=1):
    """The adaptive attacker's queries: n_per_id public images per identity, the first n_images
    (the rule of a protection's --split public --n_per_id K --n_images N), restricted to what
    its feature file holds; says so when that is fewer than asked."""
    chosen = select(public, SimpleNamespace(n_per_id=n_per_id, n_images=n_images, seed=cfg.seed))
    got = covered(cfg, protection, chosen)
    if len(got) < n_images:
        why = (f'the protection released {len(got)} of them (rerun its --split public with '
               f'--n_per_id {n_per_id} --n_images {n_images})' if len(got) < len(chosen) else
               f'{n_per_id} per identity gives {len(chosen)} (raise --n_per_id)')
        print(f'warning: asked for {n_images} public queries of {protection}; {why}: '
              f'using {len(got)}', file=sys.stderr)
    return got


def write_encoder_release(cfg, Enc, device, meta, protection, n_queries):
    """The release of a protection that trains its own encoder (AdvLearn, DISCO, NoPeek): Enc(x)
    of eval_test and eval_train (cfg.n_per_id per identity) and of the adaptive attacker's public
    queries (one per identity, the first n_queries), as feature files. Returns {split: file}."""
    files = {}
    for name in ('eval_test', 'eval_train', 'public'):
        split = loader.load(cfg.data_dir, name, device, meta)
        rule = SimpleNamespace(n_per_id=1, n_images=n_queries, seed=cfg.seed) if name == 'public' \
            else SimpleNamespace(n_per_id=cfg.n_per_id, n_images=0, seed=cfg.seed)
        split = select(split, rule)
        file = feature_file(cfg, protection, name)
        ckpt.save_features(file, encode(Enc, split, device), split.names, protection=protection,
                           split=name, complete=True)
        files[name] = io.rel(file)
    cfg.save(run_dir(cfg, protection) / 'config.json')
    return files


def own_encoder_start(cfg, meta, device, title):
    """Where a protection that trains its own encoder starts (AdvLearn, NoPeek, DISCO): enc.pt's
    checkpoint, its (Enc, f) to train, a frozen copy for the report, and the defender's private
    training images (cfg.train_split, never eval_test) split into train / held out (cfg.holdout)."""
    if cfg.train_split not in ('eval_train', 'public'):
        raise config.ConfigError(f'--train_split {cfg.train_split!r}: expected eval_train or public '
                                 '(eval_test is what the evaluation measures)')
    src = ckpt.load(cfg, 'enc.pt', 'enc', meta, expect={'img_size': meta['img_size']})
    if not src['models']['net']['arch']['n_out'] or not meta.get('attributes'):
        raise config.ConfigError(f'{title} needs a dataset with attributes (its utility is BCE)')
    net = ckpt.build(src, 'net', device, eval_mode=False).requires_grad_(True)
    pvt = loader.load(cfg.data_dir, cfg.train_split, device, meta).with_attrs()
    train_idx, held_idx = loader.holdout(pvt, cfg.holdout, cfg.seed)
    return src, net, ckpt.build(src, 'net', device), pvt.subset(train_idx), pvt.subset(held_idx)


@torch.no_grad()
def encoded_auc(net, split, device):
    """(Enc features of a split, the mean AUC of f on them), eval mode: a defence's utility."""
    net.eval()
    feats = encode(net.Enc, split, device)
    return feats, metrics.mean_auc(predict(net.f, feats), split.attrs.cpu())
