"""Hyperparameters, nanoGPT style: a script's HP dict (paper values), its PRESETS (CPU-sized runs) and,
below HP, RANGES for keys that need more than "finite and >= 0". `parse` applies the defaults, the
stage keys below, `--preset NAME` and `--key value` (typed like the default); --help shows what each
preset changes. Errors a user can cause (ConfigError, ckpt.CheckpointError, DatasetError) are
UserErrors: one line `error: ...`, exit status 2, the traceback too under --debug / CRAFTER_DEBUG=1.
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
)
STAGE_PRESETS = {
    'tiny': dict(data_dir='dataset/tiny', params_dir='params/tiny'),
    'demo': dict(data_dir='dataset/synthetic32', params_dir='params/demo'),
    'celeba-cpu': dict(data_dir='dataset/celeba32', params_dir='params/celeba-cpu'),
    # the paper's settings = every script's defaults, 64 px CelebA (make pipeline PRESET=paper)
    'paper': dict(data_dir='dataset/celeba64', params_dir='params/paper'),
    # real LFW (dataset/prepare_lfw.py): 32 px with celeba-cpu's CPU sizes, or 128 px for GPUs
    'lfw-cpu': dict(data_dir='dataset/lfw32', params_dir='params/lfw-cpu'),
    'paper-lfw': dict(data_dir='dataset/lfw128', params_dir='params/paper-lfw'),
}
PRESET_SIZES = {'lfw-cpu': 'celeba-cpu'}   # a preset a script does not name takes these sizes
# Every number must be finite and >= 0 (no key here means anything below 0); a script's RANGES
# declares more: '>=1' (counts), '>0' (learning rates), '[0,1)', '(0,1)', '[0,1]' (fractions), a list
# of allowed values, or '... or -1' where a key's comment gives -1 a meaning.
DEFAULT_RULE = '>=0'
_WORDS = {'[0,1)': 'at least 0 and below 1', '(0,1)': 'strictly between 0 and 1', '[0,1]': 'between 0 and 1'}


def check_range(key, value, rule):
    """None when `value` satisfies `rule`, else what was expected (for the error message)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(rule, (list, tuple, set)):
        return None if value in rule else 'one of ' + ', '.join(str(v) for v in rule)
    rule = rule.strip()
    if ' or ' in rule:
        first, sentinel = rule.split(' or ', 1)
        bad = None if value == float(sentinel) else check_range(key, value, first)
        return bad and f'{bad} (or {sentinel.strip()})'
    if not math.isfinite(value):
        return 'a finite number'
    if rule[0] in '[(':
        lo, hi = (float(v) for v in rule[1:-1].split(','))
        ok = (lo <= value if rule[0] == '[' else lo < value) and (value <= hi if rule[-1] == ']' else value < hi)
        return None if ok else f'a value in {rule}' + (f' ({_WORDS[rule]})' if rule in _WORDS else '')
    for op, word in (('>=', 'at least'), ('>', 'greater than')):
        if rule.startswith(op):
            bound = float(rule[len(op):])
            return None if (value >= bound if op == '>=' else value > bound) else f'{word} {rule[len(op):]}'
    raise ValueError(f'bad range rule {rule!r} for {key}')


def check_ranges(cfg, ranges=None, given=()):
    """ConfigError naming the first hyperparameter outside its valid range."""
    for key, value in cfg.items():
        bad = check_range(key, value, (ranges or {}).get(key, DEFAULT_RULE))
        if bad is not None:
            where = (f'--{key} {value}' if key in given else f'{key}={value!r}'
                     + (f' (from --preset {cfg.preset})' if cfg.get('preset') else ''))
            raise ConfigError(f'{where}: expected {bad}')


# ---- errors a user can cause ---------------------------------------------------------------

def debug_on():
    """--debug (taken off the command line by parse) or CRAFTER_DEBUG=1: show tracebacks."""
    return os.environ.get('CRAFTER_DEBUG', '').strip() not in ('', '0', 'false', 'no', 'off')


class _Status(int):
    """An exit status that prints as the error message (so str(e.code) is the message)."""

    def __new__(cls, status, msg):
        obj = super().__new__(cls, status)
        obj.msg = msg
        return obj

    def __repr__(self):
        return self.msg

    __str__ = __repr__


class UserError(SystemExit):
    """A mistake the user can fix. Uncaught, Python reads `.code` to exit: that prints the message as
    one line on stderr (the traceback first under --debug) and exits with status 2. Caught, it prints
    nothing; str(e) and str(e.code) are the message."""
    status, prefix = 2, 'error: '   # DatasetError's messages carry their own "error:"

    def __init__(self, msg):
        super().__init__(self.prefix + str(msg))
        self._reported = False
        # where it was raised: Python's exit handler does not hand the traceback over
        self._stack = traceback.format_stack()[:-1] if debug_on() else None

    @property
    def code(self):
        if not self._reported:
            self._reported = True
            if debug_on():
                stack = traceback.format_tb(self.__traceback__) if self.__traceback__ else self._stack or []
                print('Traceback (most recent call last):\n' + ''.join(stack).rstrip(), file=sys.stderr)
            line = str(self)
            print(line if line.startswith('error:') else f'error: {line}', file=sys.stderr, flush=True)
        return _Status(self.status, str(self))

    @code.setter
    def code(self, value):   # BaseException sets SystemExit's own slot; nothing to keep
        pass


class ConfigError(UserError):
    """A bad command line (or preset): exit status 2 and the message."""


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
        base = {**STAGE_KEYS, **STAGE_PRESETS.get(self.get('preset') or '', {})}
        return ' '.join([f'--preset {self.preset}'] * bool(self.get('preset')) + [
            f'--{k} {self[k]}' for k in ('data_dir', 'params_dir') if k in self and self[k] != base.get(k)])

    def save(self, path):
        io.write_text(path, json.dumps(dict(self), indent=1, sort_keys=True) + '\n')

    def show(self, title=''):
        width = max(len(k) for k in self)
        print('\n'.join([f'{title} config' + (f' (preset {self.preset})' if self.get('preset') else '') + ':']
                        + [f'  {k:<{width}} = {self[k]!r}' for k in sorted(self)]), flush=True)


def _coerce(key, text, default):
    """The command-line string as the type of the default."""
    kind = type(default)
    try:
        if kind is bool:
            return {'1': True, 'true': True, 'yes': True, 'on': True,
                    '0': False, 'false': False, 'no': False, 'off': False}[text.lower()]
        if kind in (int, float):
            return kind(text)
        if kind in (list, tuple):
            elem = type(default[0]) if default else float
            return kind(_coerce(key, s, elem()) for s in text.replace(' ', '').split(',') if s)
        return text
    except (ValueError, KeyError):
        what = {bool: 'true or false', int: 'an integer', float: 'a number'}.get(kind, kind.__name__)
        if kind in (list, tuple):
            what = 'a comma-separated list like ' + ','.join(str(v) for v in default)
        raise ConfigError(f'--{key} {text!r}: expected {what} (default {default!r})') from None


def parse(hp, presets=None, argv=None, stage=True, description='', ranges=None):
    """Resolve a script's hyperparameters into a Config. hp: the defaults (paper values); presets:
    {name: {key: value}}; stage: add STAGE_KEYS and STAGE_PRESETS; ranges: {key: rule} of the keys
    that need more than DEFAULT_RULE."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if '--debug' in argv and 'debug' not in hp:
        argv = [a for a in argv if a != '--debug']
        os.environ['CRAFTER_DEBUG'] = '1'
    defaults = {**hp, **{k: v for k, v in (STAGE_KEYS if stage else {'seed': 0}).items() if k not in hp}}
    own = dict(presets or {})
    presets = dict(own)
    for name, common in (STAGE_PRESETS.items() if stage else ()):  # the shared keys, under the script's
        presets[name] = {**own.get(PRESET_SIZES.get(name), {}), **common, **own.get(name, {})}
    pairs = _split_argv(argv, defaults, presets, description)
    cfg = Config(defaults, preset='')
    preset = pairs.pop('preset', None)
    if preset is not None:
        if preset not in presets:
            near = difflib.get_close_matches(preset, list(presets), n=1)
            raise ConfigError(f'unknown preset {preset!r}.' + (f' Did you mean {near[0]!r}?' if near else '')
                              + ' Known presets: ' + ', '.join(sorted(presets)))
        for k, v in presets[preset].items():
            if k not in defaults:
                raise ConfigError(f'preset {preset!r} sets unknown key {k!r}')
            if type(defaults[k]) is float and type(v) is int:
                v = float(v)
            if type(v) is not type(defaults[k]):
                raise ConfigError(f'preset sets {k}={v!r} but the default {defaults[k]!r} is a '
                                  f'{type(defaults[k]).__name__}')
            cfg[k] = v
        cfg.preset = preset
    for k, text in pairs.items():
        cfg[k] = _coerce(k, text, defaults[k])
    if stage and cfg.device not in ('auto', 'cpu', 'cuda') and not (
            cfg.device.startswith('cuda:') and cfg.device[5:].isdigit()):
        raise ConfigError(f'--device {cfg.device!r}: expected auto, cpu, cuda or cuda:N')
    check_ranges(cfg, ranges, given=pairs)
    for key in ('params_dir', 'results_dir', 'crafted_dir') if stage else ():
        p = io.repo_path(cfg[key])        # an output folder that is a file is refused before any run
        while not p.exists() and p != p.parent:
            p = p.parent
        if p.exists() and not p.is_dir():
            raise ConfigError(f'--{key} {cfg[key]}: {io.rel(p)} is a file, not a folder; pass a folder '
                              f'(it is created when missing) as --{key}')
    object.__setattr__(cfg, '_given', sorted(pairs))   # keys set on the command line (not saved)
    return cfg


def _split_argv(argv, defaults, presets, description):
    """{key: text} of `--key value`, `--key=value` and bare boolean `--flag`s."""
    pairs, i = {}, 0
    while i < len(argv):
        tok = argv[i]
        if tok in ('-h', '--help'):
            _print_help(defaults, presets, description, argv)
            raise SystemExit(0)
        if not tok.startswith('-') or tok.strip('-') == '':
            raise ConfigError(f'unexpected argument {tok!r}: options look like --name value')
        key, eq, value = tok.lstrip('-').partition('=')
        key = key.replace('-', '_') if key not in defaults and key != 'preset' else key
        if key != 'preset' and key not in defaults:
            near = difflib.get_close_matches(key, list(defaults) + ['preset'], n=1)
            raise ConfigError(f'unknown option --{key}.' + (f' Did you mean --{near[0]}?' if near else '')
                              + ' See --help for the list.')
        if not eq:
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if key != 'preset' and type(defaults[key]) is bool and (nxt is None or nxt.startswith('--')):
                value = 'true'      # a bare flag switches a boolean on
            elif nxt is None:
                raise ConfigError(f'--{key} needs a value')
            else:
                value, i = nxt, i + 1
        pairs[key] = value
        i += 1
    return pairs


def _print_help(defaults, presets, description, argv):
    """Each option with its default and, next to it, what the presets (or the one chosen) set."""
    chosen = argv[argv.index('--preset') + 1] if '--preset' in argv[:-1] else None
    shown = [chosen] if chosen in presets else sorted(presets)
    print((description.strip() + '\n\n' if description else '') + 'options (default; what a preset sets '
          'instead of the HP block):')
    for k, v in defaults.items():
        by = [f'{n}: {presets[n][k]!r}' for n in shown if k in presets[n] and presets[n][k] != v]
        print(f'  --{k} {v!r}' + (f'   ({", ".join(by)})' if by else ''))
    print('  --debug  (show the traceback of an error; or CRAFTER_DEBUG=1)\n'
          '  --preset NAME  (' + ', '.join(sorted(presets)) + ')')
