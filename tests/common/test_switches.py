"""The GPU switches (--amp, --channels_last, --compile) on every stage: each stage either honours
a switch or stops with a message that names it (runtime.REFUSES), never a silent ignore; and
channels_last leaves crafting and the white-box attack's results unchanged within tolerance."""
import importlib
import re
from pathlib import Path

import pytest
import torch

from common import ckpt, config, runtime
from Crafter_protection import crafting
from dataset import loader

ROOT = Path(__file__).resolve().parents[2]
# every script that starts through runtime.start, found in the source (a new stage is covered too)
STAGES = sorted((str(p.relative_to(ROOT).with_suffix('')).replace('/', '.'), m.group(1))
                for p in ROOT.glob('*/*.py') if '.venv' not in p.parts and 'tests' not in p.parts
                for m in re.finditer(r"runtime\.start\(cfg, '([^']+)'\)", p.read_text()))
STAGES += [('evaluate', 'evaluate')]
CRAFT = ['--beta', '0.5', '--batch_size', '5', '--n_per_id', '1', '--outer_steps', '2']


def test_every_heavy_stage_is_found():
    titles = {t for _, t in STAGES}
    assert {'trainTargetNet', 'evalTrain', 'train_gan', 'attacker', 'adaptiveUpdateG',
            'trainDecoder', 'evaluate', 'benchmark crafting'} <= titles
    # featureCrafter and zCrafter start through crafting.run(cfg, ..., title)
    assert set(runtime.REFUSES) - titles - {'featureCrafter', 'zCrafter'} == set()


@pytest.mark.parametrize('key', runtime.SWITCHES)
@pytest.mark.parametrize('module,title', STAGES + [('Crafter_protection.featureCrafter', 'featureCrafter'),
                                                   ('Crafter_protection.zCrafter', 'zCrafter')])
def test_a_switch_is_honoured_or_refused_by_name(module, title, key, tmp_path):
    cfg = config.parse({}, {}, [f'--{key}', 'true'])
    if runtime.honours(title, key):
        runtime.check_switches(cfg, title)          # honoured: starts
        return
    # refused: the stage's own main stops at start, before reading or writing anything
    mod = importlib.import_module(module)
    argv = ['--preset', 'tiny', '--data_dir', str(tmp_path / 'none'), '--params_dir', str(tmp_path),
            '--results_dir', str(tmp_path), '--crafted_dir', str(tmp_path), f'--{key}', 'true']
    if 'protection' in getattr(mod, 'HP', {}):
        argv += ['--protection', 'none']              # required arguments, checked first
    if 'weights' in getattr(mod, 'HP', {}):
        argv += ['--weights', str(tmp_path.parent / f'{tmp_path.name}_w.pt')]
        (tmp_path.parent / f'{tmp_path.name}_w.pt').write_bytes(b'')
    main = mod.main
    with pytest.raises(config.ConfigError, match=rf'--{key} is not supported by {title}: .+; run it without --{key}'):
        main(argv)
    assert list(tmp_path.iterdir()) == []


def test_crafting_refuses_compile_and_amp_for_the_hypergradient():
    for key in ('compile', 'amp'):
        assert not runtime.honours('featureCrafter', key)
    assert 'double backward' in runtime.REFUSES['featureCrafter']['compile']
    assert runtime.honours('featureCrafter', 'channels_last') and runtime.honours('attacker', 'amp')


def test_channels_last_reaches_the_loaded_models(tiny):
    tiny.ensure('amor')
    meta = loader.load_meta(tiny.data_dir)
    for flag, want in (('false', False), ('true', True)):
        Enc, G, D, _ = ckpt.load_attacker(tiny.cfg(channels_last=flag == 'true'), meta, 'cpu')
        for net in (Enc, G, D):
            w = next(p for p in net.parameters() if p.dim() == 4)
            assert w.is_contiguous(memory_format=torch.channels_last) == want


def test_amp_reaches_the_inversion(tiny, monkeypatch):
    """--amp on the attacker: every inversion step runs under runtime.autocast (bf16 on CUDA)."""
    tiny.ensure('amor')
    calls = []
    real = runtime.autocast
    monkeypatch.setattr(runtime, 'autocast', lambda cfg, device: calls.append(cfg.get('amp')) or real(cfg, device))
    from WhiteBoxAttack import attacker
    meta = loader.load_meta(tiny.data_dir)
    Enc, G, D, Amor = ckpt.load_attacker(tiny.cfg(), meta, 'cpu')
    cfg = config.Config(dict(attacker.HP, **attacker.PRESETS['tiny'], amp=True))
    attacker.whitebox(Enc, G, torch.zeros(2, *Enc(torch.zeros(1, 3, meta['img_size'], meta['img_size'])).shape[1:]),
                      cfg, Amor, D, torch.Generator().manual_seed(0), amortized=True)
    assert calls == [True] * cfg.amor_steps


def test_channels_last_leaves_crafting_and_the_attack_unchanged(tiny):
    tiny.ensure('amor')
    from Crafter_protection import featureCrafter
    out = {}
    for flag in ('false', 'true'):
        run = f'cl_{flag}'
        featureCrafter.main(tiny.args + CRAFT + ['--run', run, '--channels_last', flag])
        out[flag] = torch.load(crafting.run_dir(tiny.cfg(), run) / 'features_eval_test.pt', weights_only=True)
    a, b = out['false'], out['true']
    assert a['names'] == b['names'] and len(a['names']) >= 2
    d = a['features'] - b['features']
    print('channels_last: max abs diff', d.abs().max().item(), 'relative norm', (d.norm() / a['features'].norm()).item())
    assert d.norm() <= 1e-3 * a['features'].norm()
    # the white-box attack (amortized, the tiny budget) on the same features, NCHW against NHWC
    from WhiteBoxAttack import attacker
    meta = loader.load_meta(tiny.data_dir)
    cfg = config.Config(dict(attacker.HP, **attacker.PRESETS['tiny']))
    recon = {}
    for flag in (False, True):
        Enc, G, D, Amor = ckpt.load_attacker(tiny.cfg(channels_last=flag), meta, 'cpu')
        recon[flag] = attacker.whitebox(Enc, G, a['features'], cfg, Amor, D, None, amortized=True)
    assert torch.allclose(recon[False], recon[True], atol=1e-3)
