"""`make pipeline PRESET=tiny` end to end: every stage, every protection, the report.

Runs in a temporary folder (data, checkpoints, crafted features, results), so it never touches
the repository's own outputs, and checks metrics.json against the documented schema.
"""
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common import release

ROOT = Path(__file__).resolve().parents[2]
ATTACKS = {'whitebox', 'whitebox_amortized', 'blackbox', 'adaptive_whitebox', 'adaptive_blackbox',
           'feature2id', 'adaptive_feature2id', 'whitebox_a2', 'attribute_linkage',
           'a3_whitebox_amortized', 'a3_blackbox', 'a3_feature2id'}
A3 = {a for a in ATTACKS if a.startswith('a3_')}


@pytest.fixture(scope='module')
def pipeline(tmp_path_factory):
    if shutil.which('make') is None:
        pytest.skip('make is not installed')
    out = tmp_path_factory.mktemp('pipeline')
    env_vars = [f'DATA={out}/data', f'P={out}/params', f'RESULTS={out}/results',
                f'CRAFTED={out}/crafted', f'PY={sys.executable}']
    t0 = time.time()
    # JOBS=2 as `make demo`: two stages at a time must not trip over each other's files
    proc = subprocess.run(['make', '-C', str(ROOT), 'pipeline', 'PRESET=tiny', 'JOBS=2', *env_vars],
                          capture_output=True, text=True)
    seconds = time.time() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    found = list((out / 'results').rglob('metrics.json'))
    assert len(found) == 1, found
    return json.loads(found[0].read_text()), found[0].parent, seconds


def test_metrics_json_schema_and_ranges(pipeline):
    m, _, _ = pipeline
    assert isinstance(m['dataset'], str) and isinstance(m['n_ids'], int) and m['n_ids'] > 1
    assert m['chance'] == pytest.approx(1 / m['n_ids'])
    prots = m['protections']
    assert 'none' in prots and any(n.startswith('crafter_beta') for n in prots)
    assert any(n.startswith('zcrafter_beta') for n in prots)
    assert any(n.startswith('noise_s') for n in prots)
    assert any(n.startswith('advlearn_lambda') for n in prots)
    for name, p in prots.items():
        assert name == 'none' or release.parse(name)[0] is not None      # a declared protection
        # privacy is the worst case over the attacks that ran
        assert p['worst_attack']['eval_acc'] == max(s['eval_acc'] for s in p['attacks'].values())
        assert p['attacks'][p['worst_attack']['attack']]['eval_acc'] == p['worst_attack']['eval_acc']
        assert 0.0 <= p['mean_auc'] <= 1.0
        assert p['eps_pii'] is None or isinstance(p['eps_pii'], float)
        assert set(p['attacks']) <= ATTACKS
        for attack, s in p['attacks'].items():
            assert 0.0 <= s['eval_acc'] <= s['eval_acc_top5'] <= 1.0
            for k in ('ssim', 'fsim', 'feature_sim'):
                assert s[k] is None or -1.0 <= s[k] <= 1.0
            if attack == 'feature2id':
                assert s['ssim'] is None
    # the Makefile runs every attack for none and for the recommended protections; repeated
    # queries (A3) apply to the randomised release only
    assert set(prots['none']['attacks']) == ATTACKS - A3 and set(prots['none']['not_applicable']) == A3
    noisy = [p for n, p in prots.items() if n.startswith('noise_s')]
    assert any(set(p['attacks']) == ATTACKS for p in noisy)


def test_report_pictures_and_time(pipeline):
    _, folder, seconds = pipeline
    for name in ('report.md', 'reconstructions.png', 'tradeoff.png'):
        assert (folder / name).stat().st_size > 0
    assert 'chance' in (folder / 'report.md').read_text()
    assert seconds < 180 * 2, f'tiny pipeline took {seconds:.0f} s'   # budget 3 min; slack for a loaded CI box
