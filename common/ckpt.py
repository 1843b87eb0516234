"""Checkpoint files in params/: weights plus the config that made them, written atomically.

A checkpoint is a plain dict (loadable with weights_only=True):
    {'format': 1, 'kind': 'gan', 'models': {'G': {'arch': {...}, 'state': {...}}, ...},
     'config': {resolved hyperparameters}, 'dataset': {'dir', 'fingerprint', 'img_size', ...},
     'metrics': {...}, 'train': {optimizer states, epoch, ...} (only while training)}
Anything missing or made for other data names the numbered README command that makes it.
"""
from pathlib import Path

import torch

from common import io

FORMAT = 1
# checkpoint file -> (README step, script that makes it)
PRODUCERS = {
    'enc.pt': (1, 'Crafter_protection/trainTargetNet.py'),
    'eval.pkl': (2, 'Image2ID/evalTrain.py'),
    'facenet.pkl': (2, 'Image2ID/facenetTrain.py'),
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


class CheckpointError(SystemExit):
    def __init__(self, msg):
        super().__init__(f'error: {msg}')


def path(cfg, name):
    return io.repo_path(cfg.params_dir) / name


def how_to_make(cfg, name):
    step, script = PRODUCERS.get(Path(name).name, (None, None))
    if script is None and Path(name).name.startswith('advlearn_'):
        lam = Path(name).stem.split('lambda')[-1]
        step, script = '9b', f'Baselines/advLearning.py --lam {lam}'
    if script is None:
        return ''
    flags = cfg.overrides_for_command() if hasattr(cfg, 'overrides_for_command') else ''
    return f'make it with step {step} of the README: python {script} {flags}'.rstrip()


def dataset_record(data_dir, meta):
    return {'dir': io.rel(io.repo_path(data_dir)), 'fingerprint': meta['fingerprint'],
            'img_size': meta['img_size'], 'source': meta.get('source', ''),
            'attributes': list(meta.get('attributes', []))}


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
        step, script = PRODUCERS.get(Path(name).name, (None, 'its stage script'))
        raise CheckpointError(
            f"{io.rel(file)} is unfinished training (saved at {ck.get('train', {}).get('progress', '?')}); "
            f"finish it with: python {script} {cfg.overrides_for_command()} --resume".replace('  ', ' '))
    if meta is not None and ck['dataset']['fingerprint'] != meta['fingerprint']:
        raise CheckpointError(
            f"{io.rel(file)} was trained on {ck['dataset']['dir']} (fingerprint "
            f"{ck['dataset']['fingerprint']}) but this run reads {cfg.data_dir} (fingerprint "
            f"{meta['fingerprint']}); {how_to_make(cfg, name)}, or point --params_dir at the "
            f"checkpoints made for this data")
    for key, want in (expect or {}).items():
        have = _lookup(ck, key)
        if have is not None and have != want:
            raise CheckpointError(
                f'{io.rel(file)} has {key}={have!r} but this run needs {key}={want!r}; '
                f'{how_to_make(cfg, name)} --{key} {want}, or run this script with '
                f'--{key} {have}')
    return ck


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


def train_state(optimizers, step, total, history, unit='epoch'):
    """The `train` entry of a periodic checkpoint: enough to continue with --resume."""
    return {'optimizers': {k: o.state_dict() for k, o in optimizers.items()}, 'step': step,
            'total': total, 'history': history, 'progress': f'{unit} {step}/{total}',
            'rng': torch.get_rng_state()}


def resume(cfg, name, kind, meta, models, optimizers):
    """With --resume, restore models and optimizers from params_dir/name; returns
    (start_step, history). Without it, or for a finished checkpoint, starts from scratch."""
    if not cfg.get('resume'):
        return 0, {}
    ck = load(cfg, name, kind, meta, required=False, allow_partial=True)
    if ck is None:
        print(f'--resume: no {name} yet, starting from scratch')
        return 0, {}
    if ck.get('done', True) or 'train' not in ck:
        print(f'--resume: {name} is already finished; retraining from scratch')
        return 0, {}
    for k, m in models.items():
        getattr(m, '_orig_mod', m).load_state_dict(ck['models'][k]['state'])
    for k, o in optimizers.items():
        o.load_state_dict(ck['train']['optimizers'][k])
    torch.set_rng_state(ck['train']['rng'])
    print(f"--resume: continuing {name} from {ck['train']['progress']}")
    return ck['train']['step'], ck['train']['history']


def save_features(file, feats, names, **info):
    """Released features of named images (raw or protected), for attacks and scoring."""
    io.save_torch({'features': feats.detach().float().cpu(), 'names': list(names), **info}, file)


def load_features(file, hint=''):
    file = Path(file)
    if not file.exists():
        raise CheckpointError(f'feature file {io.rel(file)} not found' + (f'; {hint}' if hint else ''))
    obj = torch.load(file, map_location='cpu', weights_only=True)
    if not isinstance(obj, dict) or 'features' not in obj or 'names' not in obj:
        raise CheckpointError(f'{io.rel(file)} is not a feature file of this project '
                              "(a dict with 'features' and 'names')")
    return obj


def aligned_features(file, split, hint=''):
    """Features of a saved file, in the order of `split`'s images (refuses missing images)."""
    obj = load_features(file, hint)
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
    return build(ck, 'net', device)


def load_gan(cfg, meta, device, name='gan.pt'):
    """(G, D) of the attacker's prior, frozen."""
    ck = load(cfg, name, 'gan', meta, expect={'img_size': meta['img_size']})
    return build(ck, 'G', device), build(ck, 'D', device)


def load_amor(cfg, meta, device, latent_dim, name='amor.pt'):
    ck = load(cfg, name, 'amor', meta, expect={'latent_dim': latent_dim})
    return build(ck, 'Amor', device)


def load_attacker(cfg, meta, device, need_amor=True, enc='enc.pt', gan='gan.pt', amor='amor.pt'):
    """Enc, G, D and (optionally) Amor, i.e. everything the white-box attacker has."""
    Enc = load_target(cfg, meta, device, enc).Enc
    G, D = load_gan(cfg, meta, device, gan)
    Amor = load_amor(cfg, meta, device, G.latent_dim, amor) if need_amor else None
    return Enc, G, D, Amor
