"""The hyperparameter system: overrides, presets, types and the errors users see."""
import json

import pytest

from common import config

HP = dict(epochs=30, lr=1e-3, name='x', flag=False, betas=(0.5, 1.0), depth=152)
PRESETS = {'demo': dict(epochs=4, depth=18)}


def test_defaults_and_stage_keys():
    cfg = config.parse(HP, PRESETS, [])
    assert cfg.epochs == 30 and cfg.lr == 1e-3 and cfg.preset == ''
    assert cfg.device == 'auto' and cfg.seed == 0 and cfg.params_dir == 'params'


def test_overrides_are_typed():
    cfg = config.parse(HP, PRESETS, ['--epochs', '7', '--lr=0.5', '--name', 'y', '--flag',
                                     '--betas', '1,2,3'])
    assert cfg.epochs == 7 and isinstance(cfg.epochs, int)
    assert cfg.lr == 0.5 and cfg.name == 'y' and cfg.flag is True
    assert cfg.betas == (1.0, 2.0, 3.0)
    assert config.parse(HP, PRESETS, ['--flag', 'false']).flag is False


def test_preset_then_override_and_shared_preset_keys():
    cfg = config.parse(HP, PRESETS, ['--preset', 'demo', '--epochs', '2'])
    assert cfg.epochs == 2 and cfg.depth == 18 and cfg.preset == 'demo'
    assert cfg.data_dir == 'dataset/synthetic32' and cfg.params_dir == 'params/demo'
    # the shared presets exist for every stage script, even without entries of its own
    cfg = config.parse(HP, PRESETS, ['--preset', 'celeba-cpu'])
    assert cfg.params_dir == 'params/celeba-cpu' and cfg.epochs == 30


@pytest.mark.parametrize('argv, needle', [
    (['--epoch', '3'], 'Did you mean --epochs'),
    (['--epochs', 'three'], 'expected an integer'),
    (['--lr', 'fast'], 'expected a number'),
    (['--flag', 'maybe'], 'true or false'),
    (['--preset', 'dmeo'], "Did you mean 'demo'"),
    (['--device', 'tpu'], 'auto, cpu, cuda'),
    (['--epochs'], 'needs a value'),
    (['stray'], 'unexpected argument'),
])
def test_errors_are_clear(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        config.parse(HP, PRESETS, argv)
    assert needle in str(e.value.code)


def test_non_stage_scripts_get_only_seed():
    cfg = config.parse(dict(out='d'), {}, ['--seed', '3'], stage=False)
    assert cfg.seed == 3 and 'params_dir' not in cfg


def test_save_and_show(tmp_path, capsys):
    cfg = config.parse(HP, PRESETS, ['--preset', 'demo'])
    cfg.save(tmp_path / 'c.json')
    assert json.loads((tmp_path / 'c.json').read_text())['epochs'] == 4
    cfg.show('unit')
    assert 'preset demo' in capsys.readouterr().out


def test_help_lists_options_and_presets(capsys):
    with pytest.raises(SystemExit) as e:
        config.parse(HP, PRESETS, ['--help'])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert '--epochs 30' in out and 'demo' in out


def test_command_hint_carries_preset_and_dirs():
    cfg = config.parse(HP, PRESETS, ['--preset', 'demo', '--params_dir', 'elsewhere'])
    assert cfg.overrides_for_command() == '--preset demo --params_dir elsewhere'
