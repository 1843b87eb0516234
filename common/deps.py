"""The Makefile's view of the code, written to .deps.mk (stdlib only, so make needs no venv):

- for every script, the project files it runs (itself and what it imports, transitively):
  `DEPS_<script> := ...`. A stage's stamp depends on them, so editing the HP block at the top of
  a script, or a module it uses, reruns that stage and what depends on it;
- for every protection file (a top-level literal `PROTECTION = dict(...)`, common/release.py), its
  knob values per preset and the rules that make its releases.

    python3 common/deps.py > .deps.mk
"""
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ('common', 'dataset', 'Crafter_protection', 'WhiteBoxAttack', 'BlackBoxAttack',
           'Baselines', 'Feature2ID', 'Image2ID', 'benchmarks')
PROTECTION_FOLDERS = ('Crafter_protection', 'Baselines')
KEYS = ('prefix', 'knob', 'label', 'style', 'own_encoder', 'randomised', 'order', 'make')
# optional: points / full / train / sweep {preset: [values]}, needs [stage stamps], trains (its
# eval_test run trains what the other splits reuse, so they wait for it: make -j never trains twice)


def resolve(name):
    """The project file of a dotted module name (None for third-party modules)."""
    parts = name.split('.')
    for n in (len(parts), len(parts) - 1):
        f = ROOT.joinpath(*parts[:n]).with_suffix('.py') if n > 0 else None
        if f is not None and f.is_file():
            return f
    return None


def imports(file):
    out = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f'{node.module}.{a.name}' for a in node.names] + [node.module]
        else:
            continue
        out |= {f for f in map(resolve, names) if f is not None}
    return out


def closure(file):
    seen, todo = set(), [Path(file).resolve()]
    while todo:
        f = todo.pop()
        if f not in seen:
            seen.add(f)
            todo += imports(f) - seen
    return sorted(str(f.relative_to(ROOT)) for f in seen)


def declaration(file):
    """The PROTECTION dict of a file (with 'file' and 'module'), or None; a malformed one stops
    with the file and line."""
    file = Path(file).resolve()
    rel = file.relative_to(ROOT) if file.is_relative_to(ROOT) else file
    for node in ast.parse(file.read_text(), str(file)).body:
        if isinstance(node, ast.Assign) and [getattr(t, 'id', None) for t in node.targets] == ['PROTECTION']:
            v, where = node.value, f'{rel}:{node.lineno}'
            try:
                spec = ({k.arg: ast.literal_eval(k.value) for k in v.keywords}
                        if isinstance(v, ast.Call) and not v.args else ast.literal_eval(v))
            except (ValueError, TypeError, AttributeError, SyntaxError):
                spec = None
            if not isinstance(spec, dict):
                raise SystemExit(f'error: {where}: PROTECTION must be a literal dict(...) of {", ".join(KEYS)}')
            missing = [k for k in KEYS if k not in spec]
            if missing:
                raise SystemExit(f'error: {where}: PROTECTION lacks {", ".join(missing)}')
            return {**spec, 'file': str(rel), 'module': '.'.join(rel.with_suffix('').parts)}
    return None


def declarations():
    """{prefix: declaration} of every protection file."""
    out = {}
    for folder in PROTECTION_FOLDERS:
        for file in sorted((ROOT / folder).glob('*.py')):
            spec = declaration(file)
            if spec is not None:
                out[spec['prefix']] = spec
    return out


def rules(spec):
    """Make variables and pattern rules of one protection: its release stamps are
    .done_<name>_<split> (one run per split), or .done_release_<name> when it trains its own
    encoder (one run writes every split)."""
    p, make = spec['prefix'], spec['make']
    out = [f'PREFIXES += {p}', f'SCRIPT_{p} := {spec["file"]}']
    if spec['own_encoder']:
        out.append(f'OWN += {p}')
    for key in ('points', 'full', 'train', 'sweep'):
        for preset, values in (spec.get(key) or {}).items():
            out.append(f'{key.upper()}_{p}_{preset} := ' + ' '.join(f'{v:g}' for v in values))
    needs = ' '.join(f'$(P)/.done_{n}' for n in spec.get('needs', ['enc']))
    deps = f'$(call D,{spec["file"]})'
    if spec['own_encoder']:
        cmd = make.format(value='$*', split='all')
        out += [f'$(P)/.done_release_{p}%: {needs} {deps}',
                f'\t$(PY) {cmd} $(ARGS) --n_queries $(NPUB) && touch $@']
    else:
        for split, flags in (('eval_test', ''), ('public', ' --n_per_id 1 --n_images $(NPUB)'),
                             ('eval_train', ' $(TRAIN)')):
            first = f' $(P)/.done_{p}%_eval_test' if spec.get('trains') and split != 'eval_test' else ''
            out += [f'$(P)/.done_{p}%_{split}: {needs}{first} {deps}',
                    f'\t$(PY) {make.format(value="$*", split=split)} $(ARGS){flags} && touch $@']
    return out


def main():
    scripts = [ROOT / 'evaluate.py'] + [f for d in FOLDERS for f in sorted((ROOT / d).glob('*.py'))
                                        if f.name != '__init__.py']
    for f in scripts:
        print(f'DEPS_{f.relative_to(ROOT)} := ' + ' '.join(closure(f)))
    for spec in sorted(declarations().values(), key=lambda s: s['order']):
        print('\n'.join(rules(spec)))


if __name__ == '__main__':
    sys.exit(main())
