"""Row 17 of the robustness table: two processes on one crafting folder never work on the same
batch. The claim itself (common/dist.claim) is checked here in milliseconds; the crafting runs
that use it (2 processes, 2 torchrun ranks, a killed worker) are in
tests/Crafter_protection/test_sharded.py."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import dist

ROOT = Path(__file__).resolve().parents[2]


def _claim_in_other_process(path, timeout_s=600.0):
    """What another live process gets when it tries to claim `path`."""
    code = ('import sys; sys.path.insert(0, sys.argv[1]); from common import dist; '
            'r = dist.claim(sys.argv[2], float(sys.argv[3])); '
            'print(r if isinstance(r, str) else "claimed")')
    out = subprocess.run([sys.executable, '-c', code, str(ROOT), str(path), str(timeout_s)],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _dead_pid():
    p = subprocess.Popen([sys.executable, '-c', 'pass'])
    p.wait()
    return p.pid


def test_a_live_claim_is_not_taken(tmp_path):
    path = tmp_path / 'eval_test_0000.claim'
    mine = dist.claim(path, 600.0)
    assert isinstance(mine, dist.Claim) and mine.mine()
    assert _claim_in_other_process(path) == 'held'
    assert mine.mine()                                   # still ours, file unchanged
    mine.release()
    assert not path.exists()
    assert _claim_in_other_process(path) == 'claimed'    # free again once released


def test_a_dead_owners_claim_is_taken_over_once(tmp_path):
    path = tmp_path / 'eval_test_0001.claim'
    dead = _dead_pid()
    path.write_text(json.dumps(dict(host=dist.HOST, pid=dead)) + '\n')
    first = dist.claim(path, 600.0)
    assert isinstance(first, dist.Claim), first
    assert 'dead' in first.reason and str(dead) in first.previous
    assert first.mine()
    # a second taker arriving now finds the claim held by the new (live) owner
    assert _claim_in_other_process(path) == 'held'


def test_an_old_claim_from_another_host_is_taken_over_after_the_timeout(tmp_path):
    path = tmp_path / 'public_0000.claim'
    path.write_text(json.dumps(dict(host='elsewhere', pid=1)) + '\n')
    assert dist.claim(path, 600.0) == 'held'             # fresh: another host may be working
    old = time.time() - 3600
    os.utime(path, (old, old))
    got = dist.claim(path, 600.0)
    assert isinstance(got, dist.Claim) and 'written 3600 s ago' in got.reason
    assert _claim_in_other_process(path) == 'held'       # the new owner lives here
