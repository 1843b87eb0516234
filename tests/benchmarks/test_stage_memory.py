"""benchmarks/stage_memory.py at tiny: both encodings run the stage, and params/ is not touched."""
from pathlib import Path

from benchmarks import stage_memory


def test_stage_memory_runs_old_and_new_encode_in_a_scratch_folder(tiny):
    tiny.ensure('enc')
    before = sorted(p.name for p in Path(tiny.params_dir).iterdir())
    out = stage_memory.main(['--preset', 'tiny', '--data_dir', tiny.data_dir,
                             '--params_dir', tiny.params_dir, '--stages', 'feature2id'])
    assert set(out) == {'feature2id_before_peak_rss_mib', 'feature2id_after_peak_rss_mib'}
    assert all(v > 50 for v in out.values())        # a torch process: tens of MiB at least
    assert sorted(p.name for p in Path(tiny.params_dir).iterdir()) == before
