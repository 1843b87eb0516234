"""What every protection that trains its own encoder (AdvLearn, NoPeek, DISCO) must release: its
checkpoint loads as a target net whose Enc makes the released eval_test features (not the original
Enc's), whose f scores every attribute, and every split the evaluation reads, the public queries
one per identity."""
import torch

from common import ckpt, release
from dataset import loader


def assert_own_encoder_release(tiny, name):
    meta, cfg = loader.load_meta(tiny.data_dir), tiny.cfg()
    assert release.own_encoder(name) and release.enc_name(name) == f'{name}.pt'
    net = ckpt.load_target(cfg, meta, 'cpu', f'{name}.pt')
    orig = ckpt.load_target(cfg, meta, 'cpu')
    test = loader.load(tiny.data_dir, 'eval_test', 'cpu', meta)
    cfg.crafted_dir = tiny.args[tiny.args.index('--crafted_dir') + 1]
    released = ckpt.aligned_features(release.feature_file(cfg, name, 'eval_test'), test)
    with torch.no_grad():
        mine, raw = net.Enc(test.x()), orig.Enc(test.x())
    assert torch.allclose(released, mine, atol=1e-5)
    assert (released - raw).norm() > 0.1 * raw.norm()      # not the original Enc
    assert net(test.x()).shape[1] == len(meta['attributes'])   # its own f comes with it
    pub = loader.load(tiny.data_dir, 'public', 'cpu', meta)
    queries = release.public_queries(cfg, name, pub, 16)
    assert len(queries) == min(16, pub.n_ids) and len(set(queries.ids.tolist())) == len(queries)
    for split in ('eval_train', 'public'):
        obj = ckpt.load_features(release.feature_file(cfg, name, split))
        assert obj['protection'] == name and len(obj['names']) > 0
    return net
