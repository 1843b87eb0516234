"""release.public_queries: the adaptive attacker's Q public queries, K per identity.

Q above the number of public identities needs K > 1; asking for more queries than the rule or
the protection's release gives must say so (it used to drop to one per identity silently).
"""
from collections import Counter

from Baselines import noise
from common import release
from dataset import loader


def _public(tiny):
    meta = loader.load_meta(tiny.data_dir)
    return loader.load(tiny.data_dir, 'public', 'cpu', meta)


def test_queries_take_n_per_id_images_of_each_identity(tiny, capsys):
    tiny.ensure('data')
    cfg, pub = tiny.cfg(seed=0), _public(tiny)
    n_ids = len(set(pub.ids.tolist()))
    one = release.public_queries(cfg, 'none', pub, 10 ** 6)
    two = release.public_queries(cfg, 'none', pub, 2 * n_ids, n_per_id=2)
    assert len(one) == n_ids and len(two) == 2 * n_ids
    assert set(Counter(two.ids.tolist()).values()) == {2}
    err = capsys.readouterr().err
    assert 'asked for 1000000 public queries' in err and 'raise --n_per_id' in err
    release.public_queries(cfg, 'none', pub, 2 * n_ids, n_per_id=2)
    assert capsys.readouterr().err == ''          # enough queries: no warning


def test_queries_beyond_the_release_name_the_command_that_makes_more(tiny, capsys):
    tiny.ensure('enc')
    noise.main(tiny.args + ['--sigma', '3', '--split', 'public', '--n_per_id', '1',
                            '--n_images', '4'])
    cfg, pub = tiny.cfg(seed=0), _public(tiny)
    got = release.public_queries(cfg, 'noise_s3', pub, 8)
    assert len(got) == 4
    err = capsys.readouterr().err
    assert 'released 4 of them' in err and '--n_per_id 1 --n_images 8' in err
