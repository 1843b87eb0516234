"""A protection is one file: a dummy defence added as one new file in Baselines/ (of a copy of the
code) and nothing else is found by the registry, planned by the Makefile, evaluated, reported and
plotted."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from common import deps, release

ROOT = Path(__file__).resolve().parents[2]
DUMMY = '''"""A dummy defence for the registry test: releases k * Enc(x)."""
from common import ckpt, config, release, runtime
from common.train import encode
from dataset import loader

PROTECTION = dict(prefix='dummy_k', knob='k', label='Dummy (k)', style='*-', own_encoder=False,
                  randomised=False, order=99, make='Baselines/dummy_scale.py --k {value} --split {split}',
                  points={'tiny': [0.5]}, full={'tiny': [0.5]})
HP = dict(k=1.0, split='eval_test', n_per_id=0, n_images=0)
PRESETS = {'tiny': dict(n_per_id=1)}


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv)
    device, clock = runtime.start(cfg, 'dummy')
    meta = loader.load_meta(cfg.data_dir)
    Enc = ckpt.load_target(cfg, meta, device).Enc
    split = release.select(loader.load(cfg.data_dir, cfg.split, device, meta), cfg)
    name = release.name(PROTECTION['prefix'], cfg.k)
    ckpt.save_features(release.feature_file(cfg, name, cfg.split), cfg.k * encode(Enc, split, device),
                       split.names, protection=name, split=cfg.split)


if __name__ == '__main__':
    main()
'''


def copy_code(dst):
    files = subprocess.run(['git', 'ls-files', '*.py', 'Makefile', '*.toml', '*.txt'], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    files += [str(f.relative_to(ROOT)) for f in ROOT.glob('*/*.py')]     # not yet committed
    for f in set(files):
        if (ROOT / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)


def test_declarations_are_checked(tmp_path):
    f = tmp_path / 'bad.py'
    f.write_text("PROTECTION = dict(prefix='x_', knob='k')\n")
    with pytest.raises(SystemExit, match='lacks label'):
        deps.declaration(f)
    f.write_text("PROTECTION = dict(prefix=name(), knob='k')\n")
    with pytest.raises(SystemExit, match='literal'):
        deps.declaration(f)


def test_names_parse_by_the_longest_prefix():
    assert release.family('crafter_beta0.3') == ('crafter_beta', 0.3)
    assert release.family('zcrafter_beta1') == ('zcrafter_beta', 1.0)   # not crafter_beta + 'z'
    assert release.parse('none') == (None, 0.0) and release.own_encoder('advlearn_lambda0.9')
    assert release.randomised('noise_s2') and not release.randomised('crafter_beta1')


def test_a_defence_in_one_new_file_is_planned_evaluated_reported_and_plotted(tiny, tmp_path):
    tiny.ensure('attack')      # enc, eval, gan, amor
    code = tmp_path / 'code'
    copy_code(code)
    (code / 'Baselines' / 'dummy_scale.py').write_text(DUMMY)
    env = {**os.environ, 'PYTHONPATH': str(code)}     # the copy's modules before the installed ones
    out = tmp_path / 'results'

    if shutil.which('make'):
        proc = subprocess.run(['make', '-n', '-C', str(code), 'protections', 'PRESET=tiny',
                               f'DATA={tiny.data_dir}', f'P={tmp_path}/p', f'PY={sys.executable}',
                               f'VENV={ROOT}/.venv/.installed'], capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        for stamp in ('dummy_k0.5_eval_test', 'dummy_k0.5_public', 'adaptive_dummy_k0.5',
                      'f2id_adaptive_dummy_k0.5'):
            assert f'.done_{stamp}' in proc.stdout, stamp
        assert re.search(r'Baselines/dummy_scale.py --k 0.5 --split eval_test', proc.stdout)

    run = [sys.executable, str(code / 'Baselines' / 'dummy_scale.py'), *tiny.args, '--k', '0.5']
    assert subprocess.run(run, env=env, capture_output=True, text=True).returncode == 0
    proc = subprocess.run([sys.executable, str(code / 'evaluate.py'), *tiny.args, '--out', str(out),
                           '--attacks', 'whitebox_amortized,feature2id,attribute_linkage'],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((out / 'metrics.json').read_text())
    entry = m['protections']['dummy_k0.5']
    assert set(entry['attacks']) >= {'whitebox_amortized', 'attribute_linkage'}
    assert entry['worst_attack']['eval_acc'] == max(s['eval_acc'] for s in entry['attacks'].values())
    assert '| dummy_k0.5 |' in (out / 'report.md').read_text()
    curves = json.loads((out / 'tradeoff.json').read_text())
    assert curves['Dummy (k)'][0][:2] == [entry['mean_auc'], entry['worst_attack']['eval_acc']]
    assert (out / 'tradeoff.png').stat().st_size > 0
