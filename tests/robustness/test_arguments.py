"""Issue 14, argument validation: rows 4, 5, 6 and 19 of its table, and bad options of our own.

Every number must be finite and >= 0 (common/config.py); a script declares more, right below its
HP, in RANGES. A value outside its range is a ConfigError (one line, exit status 2) before anything
is written."""
import importlib.util
import re

import pytest

from common import config
from Crafter_protection import featureCrafter, trainTargetNet
from tests.robustness.helpers import ROOT, one_line_error, run_script, snapshot, stage_args

SCRIPTS = [p for p in sorted(ROOT.glob('*/*.py')) + sorted(ROOT.glob('*.py'))
           if 'config.parse(' in p.read_text() and not p.parts[-2] in ('tests', 'common')
           and 'tests' not in p.relative_to(ROOT).parts]


def _module(path):
    spec = importlib.util.spec_from_file_location('_robust_' + path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize('script', SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_default_and_preset_is_in_range(script):
    """The ranges never refuse what a script ships (its defaults and every preset), and a script
    that declares RANGES hands them to parse."""
    mod = _module(script)
    stage = not str(script.relative_to(ROOT)).startswith('dataset/')
    if hasattr(mod, 'RANGES'):
        assert 'ranges=RANGES' in script.read_text()
        assert set(mod.RANGES) <= set(mod.HP), set(mod.RANGES) - set(mod.HP)
    for preset in [None] + list(getattr(mod, 'PRESETS', {})):
        config.parse(mod.HP, getattr(mod, 'PRESETS', {}), [] if preset is None else
                     ['--preset', preset], stage=stage, ranges=getattr(mod, 'RANGES', None))


@pytest.mark.parametrize('argv, needle', [
    (['--outer_steps', '0'], '--outer_steps 0: expected at least 1'),       # row 4
    (['--outer_steps', '-3'], '--outer_steps -3: expected at least 1'),     # row 4
    (['--beta', '-1'], '--beta -1.0: expected at least 0'),                 # row 5
    (['--batch_size', '0'], '--batch_size 0: expected at least 1'),         # row 6
    (['--lr', '0'], '--lr 0.0: expected greater than 0'),                   # row 6
    (['--lr', '-1'], '--lr -1.0: expected greater than 0'),                 # row 6
    (['--lr', 'nan'], 'expected a finite number'),                          # extra
    (['--inner_momentum', '1'], 'inner_momentum 1.0: expected a value in [0,1)'),
    (['--cg_damping', '-0.5'], 'or -1'),
    (['--n_per_id', '-1'], '--n_per_id -1: expected at least 0'),
    (['--seed', '-1'], '--seed -1'),                                         # extra
    (['--device', 'gpu'], "--device 'gpu': expected auto, cpu, cuda"),      # extra
    (['--device', 'cuda:x'], 'cuda:N'),                                      # extra
])
def test_crafter_refuses_out_of_range_values_before_writing(tiny, tmp_path, argv, needle):
    """Rows 4-6: refused by name, status 2, and no folder or file is created (so no leftover
    config_eval_test.json can block the corrected rerun)."""
    args = stage_args(tiny, tmp_path / 'params', tmp=tmp_path)
    with pytest.raises(config.ConfigError) as e:
        featureCrafter.main(args + argv)
    assert needle in str(e.value) and e.value.code == 2
    assert snapshot(tmp_path) == {}


def test_zero_means_all_where_the_script_says_so():
    """0 stays valid where an HP comment gives it a meaning (n_per_id / n_images 0 = all,
    attack_steps 0 = the attacker's preset, first_inner_steps 0 = start at Amor(f0))."""
    cfg = config.parse(featureCrafter.HP, featureCrafter.PRESETS,
                       ['--n_per_id', '0', '--n_images', '0', '--attack_steps', '0',
                        '--first_inner_steps', '0', '--beta', '0'])
    assert cfg.n_per_id == 0 and cfg.beta == 0.0


@pytest.mark.parametrize('script, argv, needle', [
    ('Baselines/advLearning.py', ['--lam', '1.5'], '--lam 1.5: expected a value in [0,1]'),
    ('Image2ID/evalTrain.py', ['--depth', '19'], '--depth 19: expected one of 18, 34, 50, 101, 152'),
    ('dataset/prepare_celeba.py', ['--eval_test_frac', '0'], 'expected a value in (0,1)'),
    ('WhiteBoxAttack/train_gan.py', ['--beta1', '1'], '--beta1 1.0: expected a value in [0,1)'),
    ('WhiteBoxAttack/train_gan.py', ['--g_steps', '0'], '--g_steps 0: expected at least 1'),
    ('WhiteBoxAttack/attacker.py', ['--lr', '0'], '--lr 0.0: expected greater than 0'),
])
def test_scripts_declare_their_ranges(script, argv, needle):
    """Each kind of rule a script declares below its HP (fractions, allowed values, counts,
    learning rates) is what refuses these values: without it they would pass "finite, >= 0"."""
    mod = _module(ROOT / script)
    stage = not script.startswith('dataset/')
    config.parse(mod.HP, mod.PRESETS, argv, stage=stage)      # the generic rule lets them through
    with pytest.raises(config.ConfigError, match=re.escape(needle)):
        config.parse(mod.HP, mod.PRESETS, argv, stage=stage, ranges=mod.RANGES)


def test_every_number_is_finite_and_not_negative_unless_declared():
    hp = dict(alpha=0.5, n=3, damping=1.0)
    for argv, needle in ((['--alpha', '-0.1'], '--alpha -0.1: expected at least 0'),
                         (['--n', '-1'], '--n -1: expected at least 0'),
                         (['--alpha', 'inf'], 'expected a finite number')):
        with pytest.raises(config.ConfigError, match=needle):
            config.parse(hp, {}, argv)
    cfg = config.parse(hp, {}, ['--damping', '-1', '--alpha', '0'], ranges={'damping': '>=0 or -1'})
    assert cfg.damping == -1.0 and cfg.alpha == 0.0


def test_a_script_can_tighten_a_range():
    with pytest.raises(config.ConfigError, match='holdout 0.0'):
        config.parse(dict(holdout=0.25), {}, ['--holdout', '0'], ranges={'holdout': '(0,1)'})


def test_preset_values_are_checked_too():
    with pytest.raises(config.ConfigError, match=r'epochs=0 \(from --preset bad\)'):
        config.parse(dict(epochs=3), {'bad': dict(epochs=0)}, ['--preset', 'bad'],
                     ranges={'epochs': '>=1'})


def test_params_dir_that_is_a_file_is_refused(tiny, tmp_path):
    """Extra: --params_dir pointing at (or under) a file is refused before anything runs."""
    f = tmp_path / 'not_a_folder'
    f.write_text('x')
    for where in (f, f / 'sub'):
        with pytest.raises(config.ConfigError, match='is a file, not a folder'):
            trainTargetNet.main(stage_args(tiny, where))
    assert f.read_text() == 'x'


def test_usage_error_exits_2_with_one_line(tmp_path):
    """Row 19 (and 12 for usage errors): status 2 as documented, one line, no traceback;
    --debug shows the traceback."""
    args = ['--params_dir', tmp_path / 'p', '--epochs', '0']
    rc, out, err = run_script('Crafter_protection/trainTargetNet.py', args)
    assert rc == 2
    assert '--epochs 0' in one_line_error(err)
    rc, out, err = run_script('Crafter_protection/trainTargetNet.py', args + ['--debug'])
    assert rc == 2 and 'Traceback' in err and 'check_ranges' in err
    assert err.strip().splitlines()[-1].startswith('error: --epochs 0')
    assert not (tmp_path / 'p').exists()
