"""Hyperparameters for every script, nanoGPT style.

A script declares its hyperparameters as a plain dict at the top (paper values as defaults) and
a dict of named presets (CPU-sized runs). `parse` then applies, in order: the defaults, the
common keys below, the preset chosen with `--preset NAME`, and `--key value` overrides. The
type of each default is the type the command line must give. Anything unknown or malformed
stops the script with a message that says what to type instead.

Every numeric hyperparameter has its valid range here, in RANGES (by key name, for every
script); a script may add or tighten rules with `parse(..., ranges={key: rule})`. A value out of
range stops the script before it writes anything.

Errors a user can cause (ConfigError here, ckpt.CheckpointError, dataset.validate.DatasetError)
are UserErrors: uncaught, they print one line `error: ...` to stderr and exit with status 2
(0 for --help). `--debug` on any stage's command line (or CRAFTER_DEBUG=1 in the environment)
prints the traceback as well.
"""
import difflib
import json
import math
import os
import sys
import traceback

from common import io

# Keys every stage script has. The preset of the same name moves data and checkpoints together,
# so a `demo` run and a `celeba-cpu` run never overwrite each other.
STAGE_KEYS = dict(
    data_dir='dataset/celeba64',   # prepared dataset (step 0 of the README)
    params_dir='params',           # where checkpoints are read and written
    results_dir='results',         # where attack and evaluation outputs go (under a run tag)
    crafted_dir='Crafter_result',  # where protections write released features (under a run tag)
    device='auto',                 # auto | cpu | cuda  (auto = cuda when available)
    seed=0,
    amp=False,                     # bf16 autocast on CUDA (ignored on CPU)
    channels_last=False,           # NHWC memory format for conv nets (GPU speed)
    compile=False,                 # torch.compile the hot models (GPU speed)
)
STAGE_PRESETS = {
    'tiny': dict(data_dir='dataset/tiny', params_dir='params/tiny'),
    'demo': dict(data_dir='dataset/synthetic32', params_dir='params/demo'),
    'celeba-cpu': dict(data_dir='dataset/celeba32', params_dir='params/celeba-cpu'),
    # (H7) the paper's settings = every script's defaults, 64 px CelebA (make pipeline PRESET=paper)
    'paper': dict(data_dir='dataset/celeba64', params_dir='params/paper'),
}

# ---- valid ranges of numeric hyperparameters, by key name, for every script ------------------
# A rule is '>=1', '>=0', '>0', an interval such as '[0,1)', or a list of allowed values; ' or -1'
# admits a sentinel. 0 is allowed where a script's HP comment gives it a meaning ("0 = all",
# "0 = off", "0 = the preset's"). Keys not named here (strings, flags, lists) are not checked.
COUNT = '>=1'      # steps, epochs, batch sizes, widths: 0 or less runs nothing, or crashes later
RANGES = {
    # iterations and epochs
    'epochs': COUNT, 'steps': COUNT, 'g_steps': COUNT, 'outer_steps': COUNT, 'inner_steps': COUNT,
    'public_epochs': COUNT, 'n_critic': COUNT, 'eval_steps': COUNT, 'eps_steps': COUNT,
    'neumann_terms': COUNT,
    'cg_iters': COUNT, 'restarts': COUNT, 'patience': COUNT, 'ckpt_every': COUNT, 'batches': COUNT,
    'amor_steps': '>=0', 'eval_amor_steps': '>=0',    # 0 = the amortizer's output, no iteration
    'first_inner_steps': '>=0',                        # 0 = start the inner solve at Amor(f0)
    'attack_steps': '>=0',                             # 0 = attacker.py's preset
    'restart_every': '>=0',                            # 0 = off (featureCrafter)
    # batch sizes, image counts, widths, sizes
    'batch_size': COUNT, 'critic_batch': COUNT, 'keep_batch': COUNT, 'batch': COUNT,
    'width': COUNT, 'critic_width': COUNT, 'dec_width': COUNT, 'gan_width': COUNT,
    'latent_dim': COUNT, 'img_size': COUNT, 'supersample': COUNT, 'a3_k': COUNT, 'n_show': COUNT,
    'eval_images': COUNT, 'std_images': COUNT, 'score_images': COUNT, 'grid_ids': COUNT,
    'grid_images': COUNT, 'images_per_id': COUNT, 'n_public': COUNT, 'n_private': COUNT,
    'n_per_id': '>=0', 'n_images': '>=0', 'dec_images': '>=0', 'n_queries': '>=0',   # 0 = all
    'private_images_per_id': '>=0',                    # 0 = images_per_id
    'depth': [18, 34, 50, 101, 152], 'oracle_depth': [18, 34, 50, 101, 152],
    'workers': '>=0', 'crop': '>=0', 'shift': '>=0', 'seed': '>=0',
    'claim_timeout_s': '>0',                           # (H7) sharded crafting: seconds
    # learning rates and optimiser constants
    'lr': '>0', 'critic_lr': '>0', 'dec_lr': '>0', 'inner_lr': '>0', 'inv_lr': '>0',
    'neumann_alpha': '>0', 'weight_decay': '>=0',
    'momentum': '[0,1)', 'inner_momentum': '[0,1)', 'beta1': '[0,1)', 'beta2': '[0,1)',
    'ema': '[0,1)',                                     # 0 = off
    'cg_damping': '>=0 or -1',                          # -1 = the Neumann series' damping
    # loss weights and scales (0 = off)
    'beta': '>=0', 'gp': '>=0', 'gp_high': '>=0', 'sigma': '>=0', 'keep_weight': '>=0',
    'prior_weight': '>=0', 'id_weight': '>=0', 'min_gain_se': '>=0', 'nuisance': '>=0',
    'scale': '>=0', 'rotate': '>=0', 'brightness': '>=0',
    'lam': '[0,1]', 'label_smoothing': '[0,1)', 'holdout': '[0,1)', 'eval_test_frac': '(0,1)',
}


def check_range(key, value, rule):
    """None when `value` satisfies `rule`, else what was expected (for the error message)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(rule, (list, tuple, set)):
        return None if value in rule else 'one of ' + ', '.join(str(v) for v in rule)
    rule = rule.strip()
    if ' or ' in rule:
        first, sentinel = rule.split(' or ', 1)
        if value == float(sentinel):
            return None
        bad = check_range(key, value, first)
        return None if bad is None else f'{bad} (or {sentinel.strip()})'
    if isinstance(value, float) and not math.isfinite(value):
        return 'a finite number'
    if rule[0] in '[(':
        lo, hi = (float(v) for v in rule[1:-1].split(','))
        ok = (lo <= value if rule[0] == '[' else lo < value) and \
             (value <= hi if rule[-1] == ']' else value < hi)
        words = {'[0,1)': 'at least 0 and below 1', '(0,1)': 'strictly between 0 and 1',
                 '[0,1]': 'between 0 and 1'}
        return None if ok else f'a value in {rule}' + (f' ({words[rule]})' if rule in words else '')
    for op, test, word in (('>=', lambda a, b: a >= b, 'at least'), ('>', lambda a, b: a > b,
                                                                     'greater than')):
        if rule.startswith(op):
            bound = float(rule[len(op):])
            bound_txt = rule[len(op):]
            return None if test(value, bound) else f'{word} {bound_txt}'
    raise ValueError(f'bad range rule {rule!r} for {key}')


def check_ranges(cfg, ranges=None, given=()):
    """ConfigError naming the first hyperparameter outside its valid range."""
    rules = {**RANGES, **(ranges or {})}
    for key, value in cfg.items():
        rule = rules.get(key)
        if rule is None:
            continue
        bad = check_range(key, value, rule)
        if bad is not None:
            where = f'--{key} {value}' if key in given else (
                f'{key}={value!r} (from --preset {cfg.get("preset")})' if cfg.get('preset')
                else f'{key}={value!r}')
            raise ConfigError(f'{where}: expected {bad}')


# ---- errors a user can cause ---------------------------------------------------------------

def debug_on():
    """--debug (taken off the command line by parse) or CRAFTER_DEBUG=1: show tracebacks."""
    return os.environ.get('CRAFTER_DEBUG', '').strip() not in ('', '0', 'false', 'no', 'off')


class _Status(int):
    """An exit status that prints as the error message (str(e.code) keeps giving the message)."""

    def __new__(cls, status, msg):
        obj = super().__new__(cls, status)
        obj.msg = msg
        return obj

    def __str__(self):
        return self.msg

    __repr__ = __str__


class UserError(SystemExit):
    """A mistake the user can fix (bad option, missing or mismatched file, bad dataset).

    Uncaught, Python reads `.code` to exit: that prints the message as one line on stderr
    (with the traceback under --debug / CRAFTER_DEBUG=1) and exits with `status` (2). Caught
    errors print nothing; str(e) and str(e.code) are the message.
    """
    status = 2
    prefix = 'error: '

    def __init__(self, msg):
        super().__init__(self.prefix + str(msg))
        self._reported = False
        # where it was raised (Python's exit handler does not hand the traceback over)
        self._stack = traceback.format_stack()[:-1] if debug_on() else None

    @property
    def code(self):
        if not self._reported:
            self._reported = True
            if debug_on():
                stack = (traceback.format_tb(self.__traceback__) if self.__traceback__ is not None
                         else self._stack or [])
                print('Traceback (most recent call last):\n' + ''.join(stack).rstrip(),
                      file=sys.stderr)
            line = str(self)
            print(line if line.startswith('error:') else f'error: {line}', file=sys.stderr,
                  flush=True)
        return _Status(self.status, str(self))

    @code.setter
    def code(self, value):   # SystemExit's own slot is set by BaseException; nothing to keep
        pass


class ConfigError(UserError):
    """Raised for bad command lines; exits with status 2 and the message."""


class Config(dict):
    """A dict of resolved hyperparameters with attribute access."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key, value):
        self[key] = value

    def overrides_for_command(self):
        """The flags that locate this run's data and checkpoints, for error messages."""
        flags = []
        if self.get('preset'):
            flags.append(f'--preset {self.preset}')
        base = dict(STAGE_KEYS)
        base.update(STAGE_PRESETS.get(self.get('preset') or '', {}))
        for k in ('data_dir', 'params_dir'):
            if k in self and self[k] != base.get(k):
                flags.append(f'--{k} {self[k]}')
        return ' '.join(flags)

    def save(self, path):
        io.write_text(path, json.dumps(dict(self), indent=1, sort_keys=True) + '\n')

    def show(self, title=''):
        width = max(len(k) for k in self)
        lines = [f'{title} config' + (f' (preset {self.preset})' if self.get('preset') else '') + ':']
        lines += [f'  {k:<{width}} = {self[k]!r}' for k in sorted(self)]
        print('\n'.join(lines), flush=True)


def _coerce(key, text, default):
    """Turn the command-line string into the type of the default."""
    kind = type(default)
    try:
        if kind is bool:
            low = text.lower()
            if low in ('1', 'true', 'yes', 'on'):
                return True
            if low in ('0', 'false', 'no', 'off'):
                return False
            raise ValueError
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind in (list, tuple):
            elem = type(default[0]) if default else float
            items = [s for s in text.replace(' ', '').split(',') if s]
            return kind(_coerce(key, s, elem()) for s in items)
        return text
    except ValueError:
        what = {bool: 'true or false', int: 'an integer', float: 'a number'}.get(kind, kind.__name__)
        if kind in (list, tuple):
            what = 'a comma-separated list like ' + ','.join(str(v) for v in default)
        raise ConfigError(f'--{key} {text!r}: expected {what} (default {default!r})') from None


def _check_value(key, value, default):
    if type(default) is float and type(value) is int:
        return float(value)
    if type(value) is not type(default):
        raise ConfigError(f'preset sets {key}={value!r} but the default {default!r} is a '
                          f'{type(default).__name__}')
    return value


def parse(hp, presets=None, argv=None, stage=True, description='', ranges=None):
    """Resolve a script's hyperparameters. Returns a Config.

    hp: the script's defaults (paper values); presets: {name: {key: value}};
    stage: add STAGE_KEYS (data/params dirs, device, seed, speed switches);
    ranges: {key: rule} added to / overriding RANGES for this script.
    `--debug` anywhere on the command line shows tracebacks of user errors (CRAFTER_DEBUG=1).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if '--debug' in argv and 'debug' not in hp:
        argv = [a for a in argv if a != '--debug']
        os.environ['CRAFTER_DEBUG'] = '1'
    defaults = dict(hp)
    if stage:
        for k, v in STAGE_KEYS.items():
            defaults.setdefault(k, v)
    else:
        defaults.setdefault('seed', 0)
    presets = dict(presets or {})
    if stage:  # the shared preset keys, under the script's own
        for name, common in STAGE_PRESETS.items():
            presets[name] = {**common, **presets.get(name, {})}

    pairs = _split_argv(argv, defaults, presets, description)
    cfg = Config(defaults)
    cfg['preset'] = ''
    preset = pairs.pop('preset', None)
    if preset is not None:
        if preset not in presets:
            near = difflib.get_close_matches(preset, list(presets), n=1)
            hint = f' Did you mean {near[0]!r}?' if near else ''
            raise ConfigError(f'unknown preset {preset!r}.{hint} Known presets: '
                              + ', '.join(sorted(presets)))
        for k, v in presets[preset].items():
            if k not in defaults:
                raise ConfigError(f'preset {preset!r} sets unknown key {k!r}')
            cfg[k] = _check_value(k, v, defaults[k])
        cfg['preset'] = preset
    for k, text in pairs.items():
        cfg[k] = _coerce(k, text, defaults[k])
    if stage and cfg.device not in ('auto', 'cpu', 'cuda') and not (
            cfg.device.startswith('cuda:') and cfg.device[5:].isdigit()):
        raise ConfigError(f'--device {cfg.device!r}: expected auto, cpu, cuda or cuda:N')
    check_ranges(cfg, ranges, given=pairs)
    if stage:
        _check_output_dirs(cfg)
    object.__setattr__(cfg, '_given', sorted(pairs))   # keys set on the command line (not saved)
    return cfg


def _check_output_dirs(cfg):
    """An output folder that is a file (or lies under one) is refused before anything runs."""
    for key in ('params_dir', 'results_dir', 'crafted_dir'):
        if not isinstance(cfg.get(key), str):
            continue
        p = io.repo_path(cfg[key])
        while not p.exists() and p != p.parent:
            p = p.parent
        if p.exists() and not p.is_dir():
            raise ConfigError(f'--{key} {cfg[key]}: {io.rel(p)} is a file, not a folder; pass a '
                              f'folder (it is created when missing) as --{key}')


def _split_argv(argv, defaults, presets, description):
    pairs = {}
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok in ('-h', '--help'):
            _print_help(defaults, presets, description)
            raise SystemExit(0)
        if not tok.startswith('-') or tok.strip('-') == '':
            raise ConfigError(f'unexpected argument {tok!r}: options look like --name value')
        key = tok.lstrip('-')
        value = None
        if '=' in key:
            key, value = key.split('=', 1)
        key = key.replace('-', '_') if key not in defaults and key != 'preset' else key
        if key != 'preset' and key not in defaults:
            near = difflib.get_close_matches(key, list(defaults) + ['preset'], n=1)
            hint = f' Did you mean --{near[0]}?' if near else ''
            raise ConfigError(f'unknown option --{key}.{hint} See --help for the list.')
        if value is None:
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if key != 'preset' and type(defaults[key]) is bool and (
                    nxt is None or nxt.startswith('--')):
                value = 'true'      # a bare flag switches a boolean on
            elif nxt is None:
                raise ConfigError(f'--{key} needs a value')
            else:
                value = nxt
                i += 1
        pairs[key] = value
        i += 1
    return pairs


def _print_help(defaults, presets, description):
    if description:
        print(description.strip() + '\n')
    print('options (default):')
    for k, v in defaults.items():
        print(f'  --{k} {v!r}')
    print('  --debug  (show the traceback of an error; or CRAFTER_DEBUG=1)')
    print('presets: ' + ', '.join(f'{n}' for n in sorted(presets)))
    for n in sorted(presets):
        print(f'  {n}: ' + ', '.join(f'{k}={v!r}' for k, v in presets[n].items()))
