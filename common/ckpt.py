"""Checkpoint files in params/: weights plus the config that made them, written atomically.

A checkpoint is a plain dict (loadable with weights_only=True):
    {'format': 1, 'kind': 'gan', 'models': {'G': {'arch': {...}, 'state': {...}}, ...},
     'config': {resolved hyperparameters}, 'dataset': {'dir', 'fingerprint', 'img_size', ...},
     'metrics': {...}, 'train': {optimizer states, epoch, random streams, ...} (only while
     training), 'id': hash of the weights, 'inputs': {checkpoint read: its id}}
The dataset record also holds 'content', a digest of the CSVs and image bytes (provenance below).
Anything missing or made for other data names the numbered README command that makes it.
"""
import hashlib
import importlib.util
import random
import shlex
from pathlib import Path

import numpy as np
import torch

from common import config, io, runtime

FORMAT = 1
# checkpoint file -> (README step, script that makes it)
PRODUCERS = {
    'enc.pt': (1, 'Crafter_protection/trainTargetNet.py'),
    'eval.pkl': (2, 'Image2ID/evalTrain.py'),
    'facenet.pkl': (2, 'Image2ID/facenetTrain.py'),
    # the adaptive attacker's own identity model, on public identities (steps 11, 12 use it)
    'attacker_id.pkl': ('11a', 'Image2ID/evalTrain.py --split public --name attacker_id.pkl'),
    'gan.pt': (3, 'WhiteBoxAttack/train_gan.py'),
    'amor.pt': (4, 'WhiteBoxAttack/trainAmor.py'),
    'dec.pkl': (6, 'BlackBoxAttack/trainDecoder.py'),
    'f2id.pt': (7, 'Feature2ID/f2id_train.py'),
    'dec_adaptive.pkl': (12, 'BlackBoxAttack/adaptiveTrainDecoder.py'),
    # the independent prior of the paper's A2 (another seed and width than gan.pt)
    'gan_a2.pt': (3, 'WhiteBoxAttack/train_gan.py --name gan_a2.pt'),
    'amor_a2.pt': (4, 'WhiteBoxAttack/trainAmor.py --gan gan_a2.pt --name amor_a2.pt'),
}


# ---- which checkpoints a protection's evaluation uses -------------------------------------
# Most protections change the released feature and keep the target net; AdvLearn
# (Baselines/advLearning.py) trains its own Enc_lambda and f_lambda, so every attack on it runs
# through that encoder and utility is measured with its own cloud model.

def changes_encoder(protection):
    return protection.startswith('advlearn_')


def protection_enc(protection):
    """The target-net checkpoint (Enc, f) a protection releases features with."""
    return f'{protection}.pt' if changes_encoder(protection) else 'enc.pt'


def protection_amor(protection, gan='gan.pt'):
    """The amortizer the white-box attacker uses against a protection (trained for its Enc)."""
    base = 'amor.pt' if gan == 'gan.pt' else gan.replace('gan', 'amor', 1)
    return f'amor_{protection}.pt' if changes_encoder(protection) else base


class CheckpointError(config.UserError):
    """A checkpoint or feature file is missing, unreadable or made for something else: one line
    naming the file and the command that fixes it; exit status 2 (config.UserError)."""


class AlreadyDone(SystemExit):
    """`--resume` found the checkpoint finished (with this run's settings): nothing to train.

    Uncaught it ends the stage with status 0 (the message is printed before it is raised); a
    stage with more to do after training may catch it: `.checkpoint` is the loaded checkpoint
    and the models passed to resume() hold its weights.
    """

    def __init__(self, msg, checkpoint=None):
        super().__init__(0)
        self.msg, self.checkpoint = msg, checkpoint

    def __str__(self):
        return self.msg


# the script that trains each kind of checkpoint, when its file name is not in PRODUCERS
KIND_SCRIPTS = {
    'enc': 'Crafter_protection/trainTargetNet.py', 'oracle': 'Image2ID/evalTrain.py',
    'gan': 'WhiteBoxAttack/train_gan.py', 'amor': 'WhiteBoxAttack/trainAmor.py',
    'dec': 'BlackBoxAttack/trainDecoder.py', 'f2id': 'Feature2ID/f2id_train.py',
}
# settings that never change what a run computes (where it runs, where files go, how often it
# saves): a resumed or finished run may differ in them
RESUME_FREE = {'data_dir', 'params_dir', 'results_dir', 'crafted_dir', 'device', 'amp',
               'channels_last', 'compile', 'resume', 'preset', 'ckpt_every', 'workers'}


def path(cfg, name):
    """params_dir/name; the first call of a process removes orphan temporary files there."""
    folder = io.repo_path(cfg.params_dir)
    io.clean_orphans(folder)
    return folder / name


def _producer(name, kind=None):
    """(README step, script path, fixed flags) of the script that writes checkpoint `name`."""
    base = Path(name).name
    step, script = PRODUCERS.get(base, (None, None))
    if script is None and base.startswith('advlearn_'):
        lam = Path(name).stem.split('lambda')[-1]
        step, script = '9b', f'Baselines/advLearning.py --lam {lam}'
    if script is None and kind in KIND_SCRIPTS:
        script = KIND_SCRIPTS[kind]
    if script is None:
        return None, None, ''
    script, _, fixed = script.partition(' ')
    return step, script, fixed


_SCRIPT_HP = {}


def script_options(script):
    """(HP, PRESETS) of a stage script (imported once; its main() does not run), or None."""
    if script not in _SCRIPT_HP:
        _SCRIPT_HP[script] = None
        try:
            spec = importlib.util.spec_from_file_location(
                '_hp_of_' + script.replace('/', '_').replace('.py', ''), io.ROOT / script)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            _SCRIPT_HP[script] = (dict(mod.HP), dict(getattr(mod, 'PRESETS', {})))
        except (Exception, SystemExit):
            pass
    return _SCRIPT_HP[script]


def _flag(key, value):
    if isinstance(value, bool):
        value = 'true' if value else 'false'
    elif isinstance(value, (list, tuple)):
        value = ','.join(str(v) for v in value)
    return f'--{key} {shlex.quote(str(value))}'


def command_flags(script, settings, skip=()):
    """The flags that make `script` run with `settings` (a saved or current config): the preset
    and every setting that differs from what that preset gives."""
    settings = dict(settings)
    preset = settings.get('preset') or ''
    opts = script_options(script) if script else None
    flags = [f'--preset {preset}'] if preset else []
    if opts is None:     # unknown script: at least where its data and checkpoints are
        base = dict(config.STAGE_KEYS)
        base.update(config.STAGE_PRESETS.get(preset, {}))
        flags += [_flag(k, settings[k]) for k in ('data_dir', 'params_dir')
                  if k in settings and settings[k] != base.get(k) and k not in skip]
        return ' '.join(flags)
    try:
        base = config.parse(opts[0], opts[1], ['--preset', preset] if preset else [])
    except SystemExit:
        base = config.parse(opts[0], {}, [])
        flags = []
    for k, v in base.items():
        if k in settings and k not in skip and k not in ('preset', 'resume') \
                and settings[k] != v:
            flags.append(_flag(k, settings[k]))
    return ' '.join(flags)


def command(script, settings, fixed='', extra='', skip=()):
    """`python script flags`, with `fixed` flags of the producer entry kept only when the
    settings do not already give them."""
    flags = command_flags(script, settings, skip)
    keep = [f for f in (fixed or '').split('--') if f.strip()
            and f'--{f.split()[0]} ' not in flags + ' ']
    parts = [f'python {script}', flags] + [f'--{f.strip()}' for f in keep] + [extra]
    return ' '.join(p for p in parts if p)


def how_to_make(cfg, name):
    step, script, fixed = _producer(name)
    if script is None:
        return ''
    flags = cfg.overrides_for_command() if hasattr(cfg, 'overrides_for_command') else ''
    cmd = ' '.join(p for p in (f'python {script}', fixed, flags) if p)
    return f'make it with step {step} of the README: {cmd}'


def dataset_record(data_dir, meta):
    rec = {'dir': io.rel(io.repo_path(data_dir)), 'fingerprint': meta['fingerprint'],
           'img_size': meta['img_size'], 'source': meta.get('source', ''),
           'attributes': list(meta.get('attributes', []))}
    try:   # the image bytes too: other images under the same CSVs are another dataset
        rec['content'] = data_content(data_dir)
    except Exception:   # unreadable data was reported by the stage that loaded it
        pass
    return rec


def save(file, *, kind, models, cfg, meta, metrics=None, train=None, done=True):
    """models: {name: nn.Module with .arch}; meta: dataset.json of the data it was trained on.

    done=False marks a periodic checkpoint of unfinished training: later stages refuse it, and
    the stage's --resume continues from its `train` state.
    """
    obj = {
        'format': FORMAT,
        'kind': kind,
        'done': bool(done),
        'models': {k: {'arch': dict(m.arch), 'state': _plain_state(m)} for k, m in models.items()},
        'config': dict(cfg),
        'dataset': dataset_record(cfg.data_dir, meta),
        'metrics': dict(metrics or {}),
    }
    obj['id'] = models_id(obj['models'])
    obj['inputs'] = inputs_of(cfg, file)    # the checkpoints this stage read ({name: id})
    if train is not None:
        obj['train'] = train
    io.save_torch(obj, file)


def _plain_state(m):
    m = getattr(m, '_orig_mod', m)   # torch.compile wrapper -> module
    return {k: v.detach().cpu() for k, v in m.state_dict().items()}


def load(cfg, name, kind, meta=None, expect=None, required=True, allow_partial=False):
    """Read params_dir/name, checking its kind, its dataset and any expected arch values.

    meta: dataset.json of this run's data; a checkpoint trained on other data is refused.
    expect: {key: value} compared with the checkpoint's model archs and config (e.g.
    {'latent_dim': 128}); a mismatch is refused with the command that would fix it.
    Returns None when the file is missing and required is False.
    """
    file = path(cfg, name)
    if not file.exists():
        if not required:
            return None
        raise CheckpointError(f'{io.rel(file)} not found: {how_to_make(cfg, name)}')
    try:
        ck = torch.load(file, map_location='cpu', weights_only=True)
    except Exception as e:   # truncated or foreign file
        raise CheckpointError(f'{io.rel(file)} cannot be read ({type(e).__name__}: {e}); '
                              f'{how_to_make(cfg, name)}') from None
    if not isinstance(ck, dict) or ck.get('format') != FORMAT or ck.get('kind') != kind:
        found = ck.get('kind') if isinstance(ck, dict) else type(ck).__name__
        raise CheckpointError(f'{io.rel(file)} is not a {kind!r} checkpoint of this project '
                              f'(found {found!r}); {how_to_make(cfg, name)}')
    if not ck.get('done', True) and not allow_partial:
        _, script, fixed = _producer(name, kind)
        how = (command(script, _here(ck.get('config', {}), cfg), fixed, '--resume') if script
               else 'its stage script with --resume')
        raise CheckpointError(
            f"{io.rel(file)} is unfinished training (saved at "
            f"{ck.get('train', {}).get('progress', '?')}); finish it with: {how}")
    if meta is not None and ck['dataset']['fingerprint'] != meta['fingerprint']:
        raise CheckpointError(
            f"{io.rel(file)} was trained on {ck['dataset']['dir']} (fingerprint "
            f"{ck['dataset']['fingerprint']}) but this run reads {cfg.data_dir} (fingerprint "
            f"{meta['fingerprint']}); {how_to_make(cfg, name)}, or point --params_dir at the "
            f"checkpoints made for this data")
    if meta is not None and ck['dataset'].get('content'):
        now = data_content(cfg.data_dir)
        if now != ck['dataset']['content']:
            raise CheckpointError(
                f"{io.rel(file)} was trained on other images than {cfg.data_dir} holds now (same "
                f"CSV tables; image content {ck['dataset']['content']} then, {now} now); "
                f"{how_to_make(cfg, name) or 'retrain it'}, or point --data_dir at the data it "
                f"was made for")
    stale = stale_inputs(ck.get('inputs'), file.parent)
    if stale:
        k, a, b = stale[0]
        raise CheckpointError(
            f'{io.rel(file)} was made from {k} {a}, but {k} now holds other weights ({b}; '
            f'retrained since); {how_to_make(cfg, name) or "retrain it"} to remake it from the '
            f'current {k}, or put back the {k} it was made from')
    for key, want in (expect or {}).items():
        have = _lookup(ck, key)
        if have is not None and have != want:
            raise CheckpointError(f'{io.rel(file)} has {key}={have!r} but this run needs '
                                  f'{key}={want!r}; ' + _mismatch_fix(cfg, name, kind, key, have, want))
    _note_read(cfg, file, ck)
    return ck


def _mismatch_fix(cfg, name, kind, key, have, want):
    """The fix for a checkpoint made with another `key`: only flags the scripts really have."""
    _, script, _ = _producer(name, kind)
    opts = script_options(script) if script else None
    fixes = []
    remake = how_to_make(cfg, name) or (f'retrain it with python {script}' if script else '')
    if opts is not None and key in opts[0]:
        fixes.append(f'{remake} --{key} {want}')
    elif key == 'img_size':
        fixes.append(f'it was trained on {have}px images and {cfg.get("data_dir")} has {want}px: '
                     f'{remake}' + (' (it takes the image size from the data)' if remake else '')
                     + f', or point --data_dir at the {have}px dataset it was made for')
    elif remake:
        fixes.append(f'{remake} (after the checkpoint it depends on)')
    if key in cfg and key != 'img_size':
        fixes.append(f'or run this script with --{key} {have}')
    return ', '.join(fixes) if fixes else 'retrain it for this run'


def _lookup(ck, key):
    for m in ck['models'].values():
        if key in m['arch']:
            return m['arch'][key]
    return ck['config'].get(key)


def build(ck, name, device='cpu', eval_mode=True):
    """Make model `name` of a loaded checkpoint, with its weights, on `device`."""
    from Crafter_protection.models import build as build_model
    entry = ck['models'][name]
    model = build_model(entry['arch'])
    model.load_state_dict(entry['state'])
    model.to(device)
    if eval_mode:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
    return model


def train_state(optimizers, step, total, history, unit='epoch', generators=None):
    """The `train` entry of a periodic checkpoint: enough to continue with --resume.

    generators: {name: torch.Generator} of the stage's own random streams (data order, noise);
    with them, and the global torch / numpy / Python states saved here, a resumed run continues
    the same streams and ends bit-identical to an uninterrupted one on CPU.
    """
    np_state = np.random.get_state()
    out = {'optimizers': {k: o.state_dict() for k, o in optimizers.items()}, 'step': step,
           'total': total, 'history': history, 'progress': f'{unit} {step}/{total}',
           'rng': torch.get_rng_state(),
           'rng_numpy': [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                         int(np_state[2]), int(np_state[3]), float(np_state[4])],
           'rng_python': _py_state(random.getstate()),
           'generators': {k: g.get_state() for k, g in (generators or {}).items()}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out['rng_cuda'] = torch.cuda.get_rng_state_all()
    return out


def _py_state(state):
    return [state[0], list(state[1]), state[2]]


def _restore_rng(train, generators):
    torch.set_rng_state(train['rng'])
    if 'rng_numpy' in train:
        name, keys, pos, has_gauss, cached = train['rng_numpy']
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if 'rng_python' in train:
        v, st, gauss = train['rng_python']
        random.setstate((v, tuple(st), gauss))
    if 'rng_cuda' in train and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(train['rng_cuda'])
    saved = train.get('generators') or {}
    missing = [k for k in (generators or {}) if k not in saved]
    for k, g in (generators or {}).items():
        if k in saved:
            g.set_state(saved[k])
    if missing:   # a checkpoint of an older version: its streams restart from the seed
        print(f"note: the checkpoint has no saved state of the {', '.join(missing)} random "
              'stream(s) (an older version); they restart from the seed, so this run will not '
              'match an uninterrupted one bit for bit')


def resume(cfg, name, kind, meta, models, optimizers, generators=None):
    """With --resume, restore models and optimizers from params_dir/name; returns
    (start_step, history). Without --resume, or with no checkpoint yet, starts from scratch.

    A finished checkpoint made with this run's settings stays finished: prints "already done"
    and raises AlreadyDone (exit status 0, nothing is rewritten). A checkpoint made with other
    settings (--width, --g_steps, --lr, ...; only where files go and the device may differ) is
    refused by name with the commands that continue it or start over. generators: the
    stage's own random streams ({name: torch.Generator}), restored with the global ones.
    """
    file = path(cfg, name)
    io.clean_orphans(file.parent)
    if not cfg.get('resume'):
        return 0, {}
    ck = load(cfg, name, kind, meta, required=False, allow_partial=True)
    if ck is None:
        print(f'--resume: no {name} yet, starting from scratch')
        return 0, {}
    done = ck.get('done', True) or 'train' not in ck
    _, script, fixed = _producer(name, kind)
    diff = _settings_diff(ck, cfg, models)
    if diff:
        have = ', '.join(f'{k}={a!r}' for k, a, _ in diff)
        want = ', '.join(f'{k}={b!r}' for k, _, b in diff)
        keep = command(script, _here(ck['config'], cfg), fixed, '--resume') if script else ''
        fresh = command(script, cfg, fixed) if script else ''
        what = ('is a finished run' if done else
                f"is an unfinished run (saved at {ck['train'].get('progress', '?')})")
        raise CheckpointError(
            f'{io.rel(file)} {what} with {have}, but this run asks for {want}; --resume only '
            + ('checks a run made with the same settings' if done else
               'continues a run with its own settings')
            + (f". {'Check it' if done else 'Finish it'} with its settings: {keep}; or train anew "
               f'with the new ones (replaces it): {fresh}' if script else
               '; run without --resume to train anew (replaces it)'))
    if done:
        for k, m in models.items():     # the finished weights, for a stage that goes on
            if k in ck['models']:
                try:
                    getattr(m, '_orig_mod', m).load_state_dict(ck['models'][k]['state'])
                except (RuntimeError, KeyError):
                    pass
        msg = (f'--resume: {io.rel(file)} is already done (finished training with these '
               'settings); nothing to do. To train it again, run without --resume (replaces it).')
        print(msg, flush=True)
        raise AlreadyDone(msg, ck)
    for k, m in models.items():
        getattr(m, '_orig_mod', m).load_state_dict(ck['models'][k]['state'])
    for k, o in optimizers.items():
        o.load_state_dict(ck['train']['optimizers'][k])
    _restore_rng(ck['train'], generators)
    print(f"--resume: continuing {name} from {ck['train']['progress']}")
    return ck['train']['step'], ck['train']['history']


def _here(saved, cfg):
    """A checkpoint's settings, located where this run finds it (data and output folders)."""
    out = dict(saved)
    for k in ('data_dir', 'params_dir', 'results_dir', 'crafted_dir', 'device'):
        if k in cfg:
            out[k] = cfg[k]
    return out


def _settings_diff(ck, cfg, models):
    """[(key, saved, now)] of settings that differ between a checkpoint and this run: every
    config key both know except RESUME_FREE, and the architecture of every model."""
    saved = ck.get('config', {})
    diff = [(k, saved[k], cfg[k]) for k in cfg
            if k in saved and k not in RESUME_FREE and _differs(saved[k], cfg[k])]
    seen = {k for k, _, _ in diff}
    for k, m in models.items():
        arch = getattr(getattr(m, '_orig_mod', m), 'arch', None)
        entry = ck['models'].get(k)
        if arch is None or entry is None:
            continue
        for a, v in dict(arch).items():
            if a in entry['arch'] and _differs(entry['arch'][a], v) and a not in seen:
                diff.append((a, entry['arch'][a], v))
                seen.add(a)
    return diff


def _differs(a, b):
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) != list(b)
    return a != b


# ---- provenance: what made a checkpoint, a crafted batch or a feature file -----------------
# Every checkpoint stores 'id', a hash of its weights (old ones without it get the same hash
# computed on load), 'inputs' ({file name: id} of the checkpoints its stage read) and, in its
# dataset record, 'content' (a hash of the CSV tables and of every image's bytes,
# dataset/loader.content_digest). On load each is checked where it is present: a checkpoint
# made from an older enc.pt, or on other images under the same CSVs, is refused with the
# command that remakes it. Files written before these fields existed still load.

_READS = {}      # id(cfg) -> (cfg, {resolved path: (name, id)}): what each stage run has read
_OUTPUTS = {}    # resolved output folder -> provenance of the run writing there (crafting)
_IDS = {}        # (path, size, mtime_ns) -> id, so a file is hashed at most once per process
_LAST = [None]   # the config of the latest load (for feature files written without one)


def models_id(models):
    """A short hash of every weight of a checkpoint's models ({name: {'arch', 'state'}})."""
    h = hashlib.sha1()
    for name in sorted(models):
        state = models[name]['state']
        for k in sorted(state):
            t = state[k].detach().cpu().contiguous()
            h.update(f'{name}.{k}:{t.dtype}:{tuple(t.shape)};'.encode())
            if t.numel():
                h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:16]


def checkpoint_id(ck):
    """The id of a loaded checkpoint: the one stored at save time, else computed from weights."""
    return ck.get('id') or models_id(ck['models'])


def file_id(file):
    """The id of the checkpoint in `file` (None if it is missing or not a checkpoint); reads
    the stored id without loading the weights (mmap), once per file version and process."""
    file = Path(file)
    try:
        st = file.stat()
    except OSError:
        return None
    key = (str(file.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _IDS:
        try:
            try:
                ck = torch.load(file, map_location='cpu', weights_only=True, mmap=True)
            except Exception:
                ck = torch.load(file, map_location='cpu', weights_only=True)
            _IDS[key] = checkpoint_id(ck) if isinstance(ck, dict) and 'models' in ck else None
        except Exception:
            _IDS[key] = None
    return _IDS[key]


def _note_read(cfg, file, ck):
    entry = _READS.setdefault(id(cfg), (cfg, {}))[1]
    entry[str(Path(file).resolve())] = (Path(file).name, checkpoint_id(ck))
    _LAST[0] = cfg


def inputs_of(cfg, out=None):
    """{name: id} of the checkpoints this run (cfg) has read, except `out` itself; a file outside
    out's folder (or the params folder) is named by its path from the repository."""
    out = Path(out).resolve() if out is not None else None
    folder = out.parent if out is not None else io.repo_path(cfg.params_dir).resolve()
    res = {}
    for p, (name, cid) in _READS.get(id(cfg), (None, {}))[1].items():
        p = Path(p)
        if out is not None and p == out:
            continue
        res[name if p.parent == folder else io.rel(p)] = cid
    return dict(sorted(res.items()))


def _input_path(folder, key):
    return Path(folder) / key if '/' not in key else io.repo_path(key)


def stale_inputs(inputs, folder):
    """[(name, recorded id, current id)] of recorded inputs whose file now holds other weights
    (a missing file is not reported: it may have moved with its folder)."""
    out = []
    for key, want in (inputs or {}).items():
        p = _input_path(folder, key)
        have = file_id(p) if p.exists() else None
        if have is not None and want is not None and have != want:
            out.append((key, want, have))
    return out


def data_content(data_dir):
    """The dataset content digest (CSV tables + image bytes), computed once per process."""
    from dataset import loader
    return loader.content_digest(data_dir)


def provenance(cfg, out=None):
    """What a run's outputs depend on besides its settings: the ids of the checkpoints it read,
    where they are, and the dataset's fingerprint and content digest."""
    from dataset import loader
    meta = loader.load_meta(cfg.data_dir)
    return {'inputs': inputs_of(cfg), 'params_dir': io.rel(io.repo_path(cfg.params_dir)),
            'data_dir': io.rel(loader.data_path(cfg.data_dir)),
            'fingerprint': meta['fingerprint'], 'content': data_content(cfg.data_dir)}


def provenance_diff(old, new):
    """[(what, recorded, now)] between two provenance records (keys missing on either side are
    not compared: records written before a field existed)."""
    diff = []
    for k in ('fingerprint', 'content'):
        if old.get(k) and new.get(k) and old[k] != new[k]:
            diff.append(('dataset ' + k, old[k], new[k]))
    a, b = old.get('inputs') or {}, new.get('inputs') or {}
    for k in sorted(set(a) & set(b)):
        if a[k] != b[k]:
            diff.append((k, a[k], b[k]))
    return diff


def register_output(folder, prov):
    """Feature files written into `folder` by this process record `prov` (crafting run folders)."""
    _OUTPUTS[str(Path(folder).resolve())] = prov


def output_provenance(folder):
    """The provenance registered for an output folder (register_output), or None: for files a
    crafting run writes there (its batches)."""
    return _OUTPUTS.get(str(Path(folder).resolve()))


def _features_provenance(file):
    prov = _OUTPUTS.get(str(Path(file).parent.resolve()))
    if prov is None and _LAST[0] is not None:
        try:
            prov = provenance(_LAST[0])
        except Exception:
            prov = None
    return prov


def check_features_provenance(file, obj, fix):
    """Refuse a feature file whose recorded checkpoints or dataset changed since it was made."""
    prov = obj.get('provenance')
    if not isinstance(prov, dict):
        return
    stale = stale_inputs(prov.get('inputs'), io.repo_path(prov.get('params_dir') or '.'))
    if stale:
        k, a, b = stale[0]
        raise CheckpointError(f'{io.rel(file)} was made from {k} {a}, but {k} now holds other '
                              f'weights ({b}; retrained since): the features are stale; {fix}')
    data = prov.get('data_dir')
    if data and prov.get('content') and io.repo_path(data).is_dir():
        try:
            now = data_content(io.repo_path(data))
        except Exception:
            return
        if now != prov['content']:
            raise CheckpointError(f'{io.rel(file)} was made from other images than {data} holds '
                                  f'now (content {prov["content"]} then, {now} now): the '
                                  f'features are stale; {fix}')


def save_features(file, feats, names, **info):
    """Released features of named images (raw or protected), for attacks and scoring; they
    record what made them (`provenance`: checkpoint ids, dataset digests) unless given."""
    if 'provenance' not in info:
        prov = _features_provenance(file)
        if prov is not None:
            info['provenance'] = prov
    io.save_torch({'features': feats.detach().float().cpu(), 'names': list(names), **info}, file)


FEATURE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)   # read as float32


def load_features(file, hint='', shape=None):
    """A feature file, checked: a dict with 'features' (N x C x H x W, float32/float16/bfloat16,
    every value finite; read as float32) and 'names' (N distinct image names).

    shape: (C, H, W) of the encoder the features must come from, when the caller knows it.
    Anything else is a CheckpointError naming the file and the fix (`hint`: how to remake it).
    """
    file = Path(file)
    fix = hint or 'write it again with the stage that made it'
    if not file.exists():
        raise CheckpointError(f'feature file {io.rel(file)} not found' + (f'; {hint}' if hint else ''))
    if file.is_dir():
        raise CheckpointError(f'feature file {io.rel(file)} is a folder, not a file; {fix}')
    try:
        obj = torch.load(file, map_location='cpu', weights_only=True)
    except Exception as e:   # truncated, empty or foreign
        raise CheckpointError(f'feature file {io.rel(file)} cannot be read ({type(e).__name__}: '
                              f'{str(e).splitlines()[0][:160] if str(e) else "no detail"}); it is '
                              f'truncated or not a feature file; {fix}') from None
    if not isinstance(obj, dict) or 'features' not in obj or 'names' not in obj:
        raise CheckpointError(f'{io.rel(file)} is not a feature file of this project '
                              f"(a dict with 'features' and 'names'); {fix}")
    feats, names = obj['features'], obj['names']
    bad = None
    if not torch.is_tensor(feats) or feats.dim() != 4:
        got = tuple(feats.shape) if torch.is_tensor(feats) else type(feats).__name__
        bad = f'features are {got}, expected one N x C x H x W tensor'
    elif feats.dtype not in FEATURE_DTYPES:
        bad = f'features are {str(feats.dtype).replace("torch.", "")}, expected float32 or float16'
    elif not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        bad = 'names are not a list of image names'
    elif len(names) != len(feats):
        bad = f'{len(feats)} feature rows but {len(names)} names'
    elif len(set(names)) != len(names):
        seen = set()
        dup = next(n for n in names if n in seen or seen.add(n))
        bad = f'image {dup!r} appears more than once ({len(names) - len(set(names))} duplicates)'
    elif shape is not None and tuple(feats.shape[1:]) != tuple(shape):
        bad = (f'features are {"x".join(map(str, feats.shape[1:]))} per image but this encoder '
               f'makes {"x".join(map(str, shape))}; they were made with another encoder or image size')
    if bad is None:
        feats = feats.float()
        finite = torch.isfinite(feats.flatten(1)).all(1)
        if not bool(finite.all()):
            first = int(torch.nonzero(~finite)[0])
            bad = (f'{int((~finite).sum())} of {len(feats)} feature rows hold NaN or infinite '
                   f'values (first: {names[first]!r})')
    if bad is not None:
        raise CheckpointError(f'{io.rel(file)}: {bad}; {fix}')
    check_features_provenance(file, obj, fix)
    obj['features'] = feats
    obj['names'] = list(names)
    return obj


def aligned_features(file, split, hint='', shape=None):
    """Features of a saved file, in the order of `split`'s images (refuses missing images)."""
    obj = load_features(file, hint, shape)
    pos = {n: i for i, n in enumerate(obj['names'])}
    missing = [n for n in split.names if n not in pos]
    if missing:
        raise CheckpointError(f'{io.rel(file)} has no features for {len(missing)} of the '
                              f'{len(split)} {split.name} images (e.g. {missing[0]}); craft '
                              'them first or choose the matching split')
    return obj['features'][torch.tensor([pos[n] for n in split.names])]


# ---- the trained models, loaded with their cross-checks ---------------------------------

def load_target(cfg, meta, device, name='enc.pt'):
    """The target network (Enc and f), frozen; name: enc.pt or a protection's own (AdvLearn)."""
    ck = load(cfg, name, 'enc', meta, expect={'img_size': meta['img_size']})
    return runtime.memory_format(build(ck, 'net', device), cfg)    # (H9) --channels_last


def load_gan(cfg, meta, device, name='gan.pt'):
    """(G, D) of the attacker's prior, frozen."""
    ck = load(cfg, name, 'gan', meta, expect={'img_size': meta['img_size']})
    return (runtime.memory_format(build(ck, 'G', device), cfg),
            runtime.memory_format(build(ck, 'D', device), cfg))


def load_amor(cfg, meta, device, latent_dim, name='amor.pt'):
    ck = load(cfg, name, 'amor', meta, expect={'latent_dim': latent_dim})
    return runtime.memory_format(build(ck, 'Amor', device), cfg)


def load_attacker(cfg, meta, device, need_amor=True, enc='enc.pt', gan='gan.pt', amor='amor.pt'):
    """Enc, G, D and (optionally) Amor, i.e. everything the white-box attacker has."""
    Enc = load_target(cfg, meta, device, enc).Enc
    G, D = load_gan(cfg, meta, device, gan)
    Amor = load_amor(cfg, meta, device, G.latent_dim, amor) if need_amor else None
    return Enc, G, D, Amor
