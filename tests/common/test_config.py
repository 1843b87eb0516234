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
    # what each preset sets instead of the HP block, next to the default
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith('  --')}
    assert 'demo: 4' in lines['--epochs'] and 'demo: 18' in lines['--depth']
    assert "tiny: 'params/tiny'" in lines['--params_dir'] and '(' not in lines['--lr']
    with pytest.raises(SystemExit):
        config.parse(HP, PRESETS, ['--preset', 'tiny', '--help'])
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines() if ln.startswith('  --')}
    assert "tiny: 'params/tiny'" in lines['--params_dir'] and 'demo' not in lines['--params_dir']


def test_command_hint_carries_preset_and_dirs():
    cfg = config.parse(HP, PRESETS, ['--preset', 'demo', '--params_dir', 'elsewhere'])
    assert cfg.overrides_for_command() == '--preset demo --params_dir elsewhere'


@pytest.mark.parametrize('rule, good, bad', [
    ('>=1', [1, 5], [0, -2]),
    ('>=0', [0, 3], [-1]),
    ('>0', [1e-9, 2.0], [0.0, -1.0, float('nan')]),
    ('[0,1)', [0.0, 0.99], [1.0, -0.1]),
    ('(0,1)', [0.5], [0.0, 1.0]),
    ('[0,1]', [0.0, 1.0], [1.01]),
    ('>=0 or -1', [-1.0, 0.0, 4.0], [-0.5, -2.0]),
    ([18, 34], [18, 34], [19]),
])
def test_range_rules(rule, good, bad):
    for v in good:
        assert config.check_range('k', v, rule) is None, (rule, v)
    for v in bad:
        assert config.check_range('k', v, rule), (rule, v)


def test_user_errors_exit_2_and_keep_their_message():
    e = config.ConfigError('--epochs 0: expected at least 1')
    assert str(e) == 'error: --epochs 0: expected at least 1'
    assert e.code == 2 and str(e.code) == str(e) and isinstance(e, SystemExit)


def test_debug_flag_is_taken_off_the_command_line(monkeypatch):
    monkeypatch.delenv('CRAFTER_DEBUG', raising=False)
    cfg = config.parse(HP, PRESETS, ['--debug', '--epochs', '3'])
    assert cfg.epochs == 3 and 'debug' not in cfg and config.debug_on()


def test_lfw_cpu_takes_celeba_cpu_sizes_and_its_own_folders():
    hp = dict(epochs=60, width=64)
    presets = {'celeba-cpu': dict(epochs=8, width=32), 'demo': dict(epochs=2)}
    cfg = config.parse(hp, presets, ['--preset', 'lfw-cpu'])
    assert (cfg.epochs, cfg.width) == (8, 32)
    assert (cfg.data_dir, cfg.params_dir) == ('dataset/lfw32', 'params/lfw-cpu')
    assert config.parse(hp, presets, ['--preset', 'celeba-cpu']).data_dir == 'dataset/celeba32'
