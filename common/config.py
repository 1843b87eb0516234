"""Hyperparameters for every script, nanoGPT style.

A script declares its hyperparameters as a plain dict at the top (paper values as defaults) and
a dict of named presets (CPU-sized runs). `parse` then applies, in order: the defaults, the
common keys below, the preset chosen with `--preset NAME`, and `--key value` overrides. The
type of each default is the type the command line must give. Anything unknown or malformed
stops the script with a message that says what to type instead.
"""
import difflib
import json
import sys

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
}


class ConfigError(SystemExit):
    """Raised for bad command lines; exits with status 2 and the message."""

    def __init__(self, msg):
        super().__init__(f'error: {msg}')


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


def parse(hp, presets=None, argv=None, stage=True, description=''):
    """Resolve a script's hyperparameters. Returns a Config.

    hp: the script's defaults (paper values); presets: {name: {key: value}};
    stage: add STAGE_KEYS (data/params dirs, device, seed, speed switches).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
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
    if stage and cfg.device not in ('auto', 'cpu', 'cuda') and not cfg.device.startswith('cuda:'):
        raise ConfigError(f'--device {cfg.device!r}: expected auto, cpu, cuda or cuda:N')
    return cfg


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
    print('presets: ' + ', '.join(f'{n}' for n in sorted(presets)))
    for n in sorted(presets):
        print(f'  {n}: ' + ', '.join(f'{k}={v!r}' for k, v in presets[n].items()))
