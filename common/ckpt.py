"""Checkpoints in params/: a plain dict (read with weights_only=True) of format, kind, done, models
({name: {arch, state}}), config, dataset (dir, fingerprint, img_size, content digest of CSVs and
images), metrics, id (a hash of the weights), inputs ({checkpoint read: its id}) and, while training,
train (optimizers, step, random streams). A file missing or made for something else is refused in one
line naming the file and the script that makes it (the Makefile runs them in order).
"""
import hashlib
import random
from pathlib import Path

import numpy as np
import torch

from common import config, deps, io
from dataset import loader

FORMAT = 1
KIND_SCRIPTS = {   # kind -> (the script that trains it, the file it writes without --name)
    'enc': ('Crafter_protection/trainTargetNet.py', 'enc.pt'), 'oracle': ('Image2ID/evalTrain.py', 'eval.pkl'),
    'gan': ('WhiteBoxAttack/train_gan.py', 'gan.pt'), 'amor': ('WhiteBoxAttack/trainAmor.py', 'amor.pt'),
    'dec': ('BlackBoxAttack/trainDecoder.py', 'dec.pkl'), 'f2id': ('Feature2ID/f2id_train.py', 'f2id.pt')}
# settings that never change what a run computes: a resumed or finished run may differ in them
RESUME_FREE = {'data_dir', 'params_dir', 'results_dir', 'crafted_dir', 'device', 'resume', 'preset',
               'ckpt_every', 'workers'}
_READS = {}      # id(cfg) -> (cfg, {resolved path: (name, id)}): what each stage run has read
_OUTPUTS = {}    # resolved output folder -> provenance of the run writing there (crafting)
_IDS = {}        # (path, size, mtime_ns) -> id, so a file is hashed at most once per process
_LAST = [None]   # the config of the latest load (for feature files written without one)


class CheckpointError(config.UserError):
    """A checkpoint or feature file is missing, unreadable or made for something else (exit 2)."""


class AlreadyDone(SystemExit):
    """--resume found the checkpoint finished with this run's settings: exit 0 uncaught; a stage with
    more to do may catch it (.checkpoint is the loaded file, resume()'s models hold its weights)."""

    def __init__(self, msg, checkpoint=None):
        super().__init__(0)
        self.msg, self.checkpoint = msg, checkpoint

    def __str__(self):
        return self.msg


def path(cfg, name):
    """params_dir/name; the first call of a process removes orphan temporary files there."""
    folder = io.repo_path(cfg.params_dir)
    io.clean_orphans(folder)
    return folder / name


def how_to_make(cfg, name, kind=None, resume=False):
    """'make it with: python SCRIPT FLAGS (or: make stages PRESET=P)' for checkpoint `name` of this run
    (kind: its kind, else told by the start of its name); '' when no script is known."""
    base, stem = Path(name).name, Path(name).stem
    own = next((s for p, s in deps.declarations().items() if s['own_encoder'] and stem.startswith(p)
                and stem[len(p):].replace('.', '', 1).isdigit()), None)
    if own:                               # a protection's own encoder (common/release.py)
        script, _, flags = own['make'].format(value=stem[len(own['prefix']):], split='all').partition(' ')
    elif stem in ('attacker_id', 'facenet', 'f2id_public'):  # identity models of the public identities
        script, flags = {'attacker_id': ('Image2ID/evalTrain.py', '--split public'),
                         'f2id_public': ('Feature2ID/f2id_train.py', '--split public'),
                         'facenet': ('Image2ID/facenetTrain.py', '')}[stem]
    else:
        kind = kind or next((k for k, (_, f) in KIND_SCRIPTS.items() if stem.startswith(Path(f).stem)), None)
        if kind not in KIND_SCRIPTS:
            return ''
        script, default = KIND_SCRIPTS[kind]
        flags = '' if base == default else f'--name {base}'
    over = cfg.overrides_for_command() if hasattr(cfg, 'overrides_for_command') else ''
    cmd = ' '.join(p for p in (f'python {script}', over, flags, '--resume' if resume else '') if p)
    make = ''.join(f' {var}={cfg[k]}' for k, var in (('data_dir', 'DATA'), ('params_dir', 'P'))
                   if f'--{k} ' in over)     # the Makefile runs every stage with --resume
    target = 'protections' if own else '' if stem == 'facenet' else 'stages'
    make = f' (or: make {target} PRESET={cfg.preset}{make})' if cfg.get('preset') and target else ''
    return f"{'finish' if resume else 'make'} it with: {cmd}{make}"


def save(file, *, kind, models, cfg, meta, metrics=None, train=None, done=True):
    """models: {name: nn.Module with .arch}; meta: dataset.json of the data it was trained on.
    done=False marks unfinished training: later stages refuse it, --resume continues it."""
    models = {k: {'arch': dict(m.arch), 'state': {n: v.detach().cpu() for n, v in getattr(
        m, '_orig_mod', m).state_dict().items()}} for k, m in models.items()}
    data = {'dir': io.rel(io.repo_path(cfg.data_dir)), 'fingerprint': meta['fingerprint'],
            'img_size': meta['img_size'], 'source': meta.get('source', ''),
            'attributes': list(meta.get('attributes', []))}
    try:   # the image bytes too: other images under the same CSVs are another dataset
        data['content'] = loader.content_digest(cfg.data_dir)
    except Exception:   # unreadable data was reported by the stage that loaded it
        pass
    io.save_torch({'format': FORMAT, 'kind': kind, 'done': bool(done), 'models': models, 'config': dict(cfg),
                   'dataset': data, 'metrics': dict(metrics or {}), 'id': models_id(models),
                   'inputs': inputs_of(cfg, file), **({'train': train} if train is not None else {})}, file)


def load(cfg, name, kind, meta=None, expect=None, required=True, allow_partial=False):
    """Read params_dir/name, checking its kind, that it is finished, its dataset (meta: this run's
    dataset.json), its inputs and `expect` ({key: value} of its archs or config).
    Returns None when the file is missing and required is False."""
    file = path(cfg, name)
    where, how = io.rel(file), how_to_make(cfg, name, kind) or 'retrain it'
    if not file.exists():
        if not required:
            return None
        raise CheckpointError(f'{where} not found; {how}')
    try:
        ck = torch.load(file, map_location='cpu', weights_only=True)
    except Exception as e:   # truncated or foreign file
        raise CheckpointError(f'{where} cannot be read ({type(e).__name__}: {e}); {how}') from None
    if not isinstance(ck, dict) or ck.get('format') != FORMAT or ck.get('kind') != kind:
        found = ck.get('kind') if isinstance(ck, dict) else type(ck).__name__
        raise CheckpointError(f'{where} is not a {kind!r} checkpoint of this project (found {found!r}); {how}')
    if not ck.get('done', True) and not allow_partial:
        raise CheckpointError(f"{where} is unfinished training (saved at {ck.get('train', {}).get('progress')}); "
                              + (how_to_make(cfg, name, kind, True) or 'rerun its script with --resume'))
    data = ck['dataset']
    if meta is not None and data['fingerprint'] != meta['fingerprint']:
        raise CheckpointError(
            f"{where} was trained on {data['dir']} (fingerprint {data['fingerprint']}) but this run reads "
            f"{cfg.data_dir} (fingerprint {meta['fingerprint']}); {how}, or point --params_dir at the "
            f"checkpoints made for this data")
    _check_sources(where, ck.get('inputs'), file.parent, meta and cfg.data_dir, data.get('content'),
                   f'{how}, or point --data_dir and --params_dir at the data and checkpoints it was made from')
    for key, want in (expect or {}).items():
        have = next((m['arch'][key] for m in ck['models'].values() if key in m['arch']), ck['config'].get(key))
        if have is not None and have != want:
            raise CheckpointError(f'{where} has {key}={have!r} but this run needs {key}={want!r}; point --data_dir '
                                  f'or --params_dir at data and checkpoints made together, or remake it; {how}')
    # what it read goes into the provenance of what this run writes
    _READS.setdefault(id(cfg), (cfg, {}))[1][str(file.resolve())] = (file.name, ck.get('id') or models_id(ck['models']))
    _LAST[0] = cfg
    return ck


def build(ck, name, device='cpu', eval_mode=True):
    """Make model `name` of a loaded checkpoint, with its weights, on `device` (frozen by default)."""
    from models import build as build_model
    model = build_model(ck['models'][name]['arch'])
    model.load_state_dict(ck['models'][name]['state'])
    model.to(device)
    return model.eval().requires_grad_(False) if eval_mode else model


# ---- exact resume: a killed run continued with --resume ends as an uninterrupted one --------

def train_state(optimizers, step, total, history, unit='epoch', generators=None):
    """The `train` entry of a periodic checkpoint. generators: {name: torch.Generator}, the stage's own
    random streams; saved with the global torch / numpy / Python states, so a resumed run continues the
    same streams and ends bit-identical to an uninterrupted one on CPU."""
    nps, py = np.random.get_state(), random.getstate()
    out = {'optimizers': {k: o.state_dict() for k, o in optimizers.items()}, 'step': step, 'total': total,
           'history': history, 'progress': f'{unit} {step}/{total}', 'rng': torch.get_rng_state(),
           'rng_numpy': [nps[0], torch.from_numpy(nps[1].astype(np.int64)), int(nps[2]), int(nps[3]), float(nps[4])],
           'rng_python': [py[0], list(py[1]), py[2]],
           'generators': {k: g.get_state() for k, g in (generators or {}).items()}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out['rng_cuda'] = torch.cuda.get_rng_state_all()
    return out


def resume(cfg, name, kind, meta, models, optimizers, generators=None):
    """With --resume, restore models, optimizers and random streams from params_dir/name; returns
    (start_step, history), (0, {}) without --resume or without a checkpoint yet. A finished checkpoint
    made with these settings raises AlreadyDone (nothing is rewritten); one made with other settings
    (only where files go and the device may differ) is refused."""
    file = path(cfg, name)
    io.clean_orphans(file.parent)
    if not cfg.get('resume'):
        return 0, {}
    ck = load(cfg, name, kind, meta, required=False, allow_partial=True)
    if ck is None:
        print(f'--resume: no {name} yet, starting from scratch')
        return 0, {}
    done = ck.get('done', True) or 'train' not in ck
    diff = _settings_diff(ck, cfg, models)
    if diff:
        what = 'is a finished run' if done else f"is an unfinished run (saved at {ck['train'].get('progress', '?')})"
        raise CheckpointError(
            f"{io.rel(file)} {what} with {', '.join(f'{k}={a!r}' for k, a, _ in diff)}, but this run asks for "
            f"{', '.join(f'{k}={b!r}' for k, _, b in diff)}; rerun with the saved values, or without --resume "
            'to train anew (replaces it)')
    for k, m in models.items():     # done: the finished weights, for a stage that goes on
        try:
            getattr(m, '_orig_mod', m).load_state_dict(ck['models'][k]['state'])
        except (RuntimeError, KeyError):
            if not done:
                raise
    if done:
        msg = (f'--resume: {io.rel(file)} is already done (finished training with these settings); nothing '
               'to do. To train it again, run without --resume (replaces it).')
        print(msg, flush=True)
        raise AlreadyDone(msg, ck)
    for k, o in optimizers.items():
        o.load_state_dict(ck['train']['optimizers'][k])
    train, saved = ck['train'], ck['train'].get('generators') or {}
    torch.set_rng_state(train['rng'])
    if 'rng_numpy' in train:
        nps = train['rng_numpy']
        np.random.set_state((nps[0], nps[1].numpy().astype(np.uint32), *nps[2:]))
    if 'rng_python' in train:
        random.setstate((train['rng_python'][0], tuple(train['rng_python'][1]), train['rng_python'][2]))
    if 'rng_cuda' in train and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(train['rng_cuda'])
    for k, g in (generators or {}).items():
        if k in saved:
            g.set_state(saved[k])
    missing = [k for k in (generators or {}) if k not in saved]
    if missing:   # an older checkpoint: those streams restart from the seed
        print(f"note: the checkpoint has no saved state of the {', '.join(missing)} random stream(s) (an "
              'older version); they restart from the seed, so this run will not match an uninterrupted '
              'one bit for bit')
    print(f"--resume: continuing {name} from {train['progress']}")
    return train['step'], train['history']


def _settings_diff(ck, cfg, models):
    """[(key, saved, now)]: config keys both know (except RESUME_FREE), then the models' archs."""
    def differs(a, b):
        both = isinstance(a, (list, tuple)) and isinstance(b, (list, tuple))
        return list(a) != list(b) if both else a != b
    saved = ck.get('config', {})
    diff = {k: (saved[k], cfg[k]) for k in cfg if k in saved and k not in RESUME_FREE and differs(saved[k], cfg[k])}
    for k, m in models.items():
        arch, entry = getattr(getattr(m, '_orig_mod', m), 'arch', None), ck['models'].get(k)
        for a, v in (dict(arch) if arch is not None and entry is not None else {}).items():
            if a in entry['arch'] and a not in diff and differs(entry['arch'][a], v):
                diff[a] = (entry['arch'][a], v)
    return [(k, a, b) for k, (a, b) in diff.items()]


# ---- provenance: what made a checkpoint, a crafted batch or a feature file -----------------
# Checked on load where present, so a file made from an older enc.pt or from other images is refused;
# files written before these fields existed still load.

def models_id(models):
    """A short hash of every weight of a checkpoint's models ({name: {'arch', 'state'}})."""
    h = hashlib.sha1()
    for name in sorted(models):
        for k, t in sorted(models[name]['state'].items()):
            t = t.detach().cpu().contiguous()
            h.update(f'{name}.{k}:{t.dtype}:{tuple(t.shape)};'.encode())
            if t.numel():
                h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:16]


def file_id(file):
    """The id of the checkpoint in `file` (None if missing or not one), read once per file version
    (mmap: the stored id without reading the weights; files older than ids hash them)."""
    try:
        st = Path(file).stat()
    except OSError:
        return None
    key = (str(Path(file).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _IDS:
        try:
            ck = torch.load(file, map_location='cpu', weights_only=True, mmap=True)
            _IDS[key] = ck.get('id') or models_id(ck['models'])
        except Exception:   # not a checkpoint
            _IDS[key] = None
    return _IDS[key]


def inputs_of(cfg, out=None):
    """{name: id} of the checkpoints this run (cfg) has read, except `out`; a file outside out's folder
    (or the params folder) is named by its path from the repository."""
    out = Path(out).resolve() if out is not None else None
    folder = out.parent if out is not None else io.repo_path(cfg.params_dir).resolve()
    return dict(sorted((name if Path(p).parent == folder else io.rel(p), cid) for p, (name, cid)
                       in _READS.get(id(cfg), (None, {}))[1].items() if out is None or Path(p) != out))


def stale_inputs(inputs, folder):
    """[(name, recorded id, current id)] of inputs whose file now holds other weights (a missing file
    is not reported: it may have moved with its folder)."""
    paths = {k: Path(folder) / k if '/' not in k else io.repo_path(k) for k in inputs or {}}
    have = {k: file_id(p) if p.exists() else None for k, p in paths.items()}
    return [(k, want, have[k]) for k, want in (inputs or {}).items()
            if have[k] is not None and want is not None and have[k] != want]


def _check_sources(where, inputs, folder, data_dir, content, fix):
    """Refuse a file made from checkpoints that now hold other weights, or from other images."""
    for k, a, b in stale_inputs(inputs, folder)[:1]:
        raise CheckpointError(f'{where} was made from {k} {a}, but {k} now holds other weights ({b}; '
                              f'retrained since); {fix}')
    try:
        now = loader.content_digest(data_dir) if data_dir and content else content
    except Exception:   # unreadable data is reported by the stage that loads it
        now = content
    if now != content:
        raise CheckpointError(f'{where} was made from other images than {data_dir} holds now (image '
                              f'content {content} then, {now} now); {fix}')


def provenance(cfg, out=None):
    """What a run's outputs depend on besides its settings: the checkpoints it read (ids), where they
    are, and the dataset's fingerprint and content digest."""
    return {'inputs': inputs_of(cfg), 'params_dir': io.rel(io.repo_path(cfg.params_dir)),
            'data_dir': io.rel(loader.data_path(cfg.data_dir)),
            'fingerprint': loader.load_meta(cfg.data_dir)['fingerprint'],
            'content': loader.content_digest(cfg.data_dir)}


def provenance_diff(old, new):
    """[(what, recorded, now)] between two provenance records (a field missing on either side is not
    compared: an older record)."""
    a, b = old.get('inputs') or {}, new.get('inputs') or {}
    return ([('dataset ' + k, old[k], new[k]) for k in ('fingerprint', 'content')
             if old.get(k) and new.get(k) and old[k] != new[k]]
            + [(k, a[k], b[k]) for k in sorted(set(a) & set(b)) if a[k] != b[k]])


def register_output(folder, prov):
    """Feature files written into `folder` by this process record `prov` (crafting run folders)."""
    _OUTPUTS[str(Path(folder).resolve())] = prov


def output_provenance(folder):
    """The provenance register_output gave an output folder, or None."""
    return _OUTPUTS.get(str(Path(folder).resolve()))


def save_features(file, feats, names, **info):
    """Released features of named images, with their `provenance` (the crafting run's, else that of the
    latest load's run) unless given."""
    if 'provenance' not in info:
        prov = output_provenance(Path(file).parent)
        try:
            prov = prov or (provenance(_LAST[0]) if _LAST[0] is not None else None)
        except Exception:   # no readable dataset: nothing to record
            pass
        info.update({'provenance': prov} if prov is not None else {})
    io.save_torch({'features': feats.detach().float().cpu(), 'names': list(names), **info}, file)


def _features_problem(feats, names, shape):
    """What is wrong with a feature file's content, or None."""
    if not torch.is_tensor(feats) or feats.dim() != 4:
        got = tuple(feats.shape) if torch.is_tensor(feats) else type(feats).__name__
        return f'features are {got}, expected one N x C x H x W tensor'
    if feats.dtype not in (torch.float32, torch.float16, torch.bfloat16):   # read as float32
        return f'features are {str(feats.dtype).replace("torch.", "")}, expected float32 or float16'
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        return 'names are not a list of image names'
    if len(names) != len(feats):
        return f'{len(feats)} feature rows but {len(names)} names'
    if len(set(names)) != len(names):
        seen = set()
        dup = next(n for n in names if n in seen or seen.add(n))
        return f'image {dup!r} appears more than once ({len(names) - len(set(names))} duplicates)'
    if shape is not None and tuple(feats.shape[1:]) != tuple(shape):
        return (f'features are {"x".join(map(str, feats.shape[1:]))} per image but this encoder makes '
                f'{"x".join(map(str, shape))}; they were made with another encoder or image size')
    finite = torch.isfinite(feats.float().flatten(1)).all(1)
    if not bool(finite.all()):
        return (f'{int((~finite).sum())} of {len(feats)} feature rows hold NaN or infinite values '
                f'(first: {names[int(torch.nonzero(~finite)[0])]!r})')


def load_features(file, hint='', shape=None):
    """A feature file, checked: 'features' (N x C x H x W, float32/16 or bfloat16, finite; read as
    float32), 'names' (N distinct image names), shape (C, H, W) when the caller knows it, and its
    provenance. Anything else is a CheckpointError naming the file and `hint` (how to remake it)."""
    file, fix = Path(file), hint or 'write it again with the stage that made it'
    where = io.rel(file)
    if not file.exists() or file.is_dir():
        raise CheckpointError(f'feature file {where} ' + (f'is a folder, not a file; {fix}' if file.exists()
                                                          else 'not found' + (f'; {hint}' if hint else '')))
    try:
        obj = torch.load(file, map_location='cpu', weights_only=True)
    except Exception as e:   # truncated, empty or foreign
        raise CheckpointError(f'feature file {where} cannot be read ({type(e).__name__}: '
                              f'{str(e).splitlines()[0][:160] if str(e) else "no detail"}); it is '
                              f'truncated or not a feature file; {fix}') from None
    if not isinstance(obj, dict) or 'features' not in obj or 'names' not in obj:
        raise CheckpointError(f"{where} is not a feature file of this project (a dict with 'features' and "
                              f"'names'); {fix}")
    bad = _features_problem(obj['features'], obj['names'], shape)
    if bad is not None:
        raise CheckpointError(f'{where}: {bad}; {fix}')
    prov = obj.get('provenance') if isinstance(obj.get('provenance'), dict) else {}
    _check_sources(where, prov.get('inputs'), io.repo_path(prov.get('params_dir') or '.'),
                   prov.get('data_dir'), prov.get('content'), f'the features are stale; {fix}')
    obj['features'], obj['names'] = obj['features'].float(), list(obj['names'])
    return obj


def aligned_features(file, split, hint='', shape=None):
    """Features of a saved file, in the order of `split`'s images (refuses missing images)."""
    obj = load_features(file, hint, shape)
    pos = {n: i for i, n in enumerate(obj['names'])}
    missing = [n for n in split.names if n not in pos]
    if missing:
        raise CheckpointError(f'{io.rel(file)} has no features for {len(missing)} of the {len(split)} '
                              f'{split.name} images (e.g. {missing[0]}); craft them first or choose the '
                              'matching split')
    return obj['features'][torch.tensor([pos[n] for n in split.names])]


# ---- the trained models, loaded with their cross-checks -------------------------------------

def load_target(cfg, meta, device, name='enc.pt'):
    """The target network (Enc and f), frozen; name: enc.pt or a protection's own (AdvLearn)."""
    return build(load(cfg, name, 'enc', meta, expect={'img_size': meta['img_size']}), 'net', device)


def load_gan(cfg, meta, device, name='gan.pt'):
    """(G, D) of the attacker's prior, frozen."""
    ck = load(cfg, name, 'gan', meta, expect={'img_size': meta['img_size']})
    return build(ck, 'G', device), build(ck, 'D', device)


def load_amor(cfg, meta, device, latent_dim, name='amor.pt'):
    return build(load(cfg, name, 'amor', meta, expect={'latent_dim': latent_dim}), 'Amor', device)


def load_attacker(cfg, meta, device, need_amor=True, enc='enc.pt', gan='gan.pt', amor='amor.pt'):
    """Enc, G, D and (optionally) Amor, i.e. everything the white-box attacker has."""
    Enc = load_target(cfg, meta, device, enc).Enc
    G, D = load_gan(cfg, meta, device, gan)
    return Enc, G, D, load_amor(cfg, meta, device, G.latent_dim, amor) if need_amor else None
