"""Imports run one way: base (common.io, common.config) -> data (dataset.layout/validate/loader),
models.py, metrics.py -> the rest of common/ -> the stage folders -> evaluate.py and benchmarks.
No module of common/ imports a stage folder, and WhiteBoxAttack and Crafter_protection never
import each other in both directions (Crafter simulates the white-box attacker, so it may use the
attack's inversion; the attack never needs Crafter)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STAGES = ('WhiteBoxAttack', 'BlackBoxAttack', 'Crafter_protection', 'Image2ID', 'Feature2ID',
          'Baselines', 'benchmarks', 'evaluate')
PROJECT = STAGES + ('common', 'dataset', 'models', 'metrics')


def project_imports(file):
    """The project modules a file imports (top-level names: 'common.ckpt', 'WhiteBoxAttack', ...),
    wherever the import statement sits (a function-level import counts too)."""
    out = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f'{node.module}.{a.name}' for a in node.names]
        else:
            continue
        out |= {n for n in names if n.split('.')[0] in PROJECT}
    return out


def modules(folder):
    return sorted((ROOT / folder).glob('*.py'))


def test_the_scan_sees_imports_inside_functions(tmp_path):
    f = tmp_path / 'm.py'
    f.write_text('import os\ndef g():\n    from WhiteBoxAttack import attacker\n    import common.io\n')
    assert project_imports(f) == {'WhiteBoxAttack', 'WhiteBoxAttack.attacker', 'common.io'}


def test_common_imports_no_stage_folder():
    bad = {f.name: sorted(i for i in project_imports(f) if i.split('.')[0] in STAGES)
           for f in modules('common')}
    assert not {k: v for k, v in bad.items() if v}


def test_the_base_and_data_layers_import_only_below_them():
    base = {'common.io', 'common.config', 'common', 'dataset', 'dataset.layout', 'dataset.validate',
            'dataset.loader'}
    for f in [ROOT / 'common' / 'io.py', ROOT / 'common' / 'config.py', ROOT / 'models.py',
              ROOT / 'metrics.py'] + [ROOT / 'dataset' / n for n in ('layout.py', 'validate.py', 'loader.py')]:
        extra = {i for i in project_imports(f) if i not in base and not i.startswith('dataset.validate.')
                 and not i.startswith('common.io.') and not i.startswith('common.config.')
                 and not i.startswith('dataset.layout.')}
        assert not extra, f'{f.name} imports {sorted(extra)}'


def test_whitebox_attack_never_imports_crafter():
    for f in modules('WhiteBoxAttack'):
        assert not any(i.startswith('Crafter_protection') for i in project_imports(f)), f.name


def test_stage_folders_do_not_import_evaluate_or_benchmarks():
    for folder in STAGES[:-2] + ('common', 'dataset'):
        for f in modules(folder):
            assert not any(i.split('.')[0] in ('evaluate', 'benchmarks') for i in project_imports(f)), f
