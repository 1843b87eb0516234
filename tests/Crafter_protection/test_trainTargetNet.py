"""Step 2 at the tiny preset: params/enc.pt holds a usable split network."""
import math

import torch

from common import ckpt
from dataset import loader


def test_target_net_trains_and_saves_a_usable_encoder(tiny):
    res = tiny.ensure('enc')
    assert 0.0 <= res['auc_private'] <= 1.0 and not math.isnan(res['auc_public_heldout'])
    cfg = tiny.cfg()
    meta = loader.load_meta(tiny.data_dir)
    net = ckpt.load_target(cfg, meta, 'cpu')
    x = torch.rand(2, 3, meta['img_size'], meta['img_size'])
    feat = net.Enc(x)
    assert feat.shape == (2, 64, meta['img_size'] // 4, meta['img_size'] // 4)
    assert net.f(feat).shape == (2, len(meta['attributes']))
    ck = ckpt.load(cfg, 'enc.pt', 'enc', meta)
    assert ck['done'] and ck['config']['preset'] == 'tiny'
    assert ck['dataset']['fingerprint'] == meta['fingerprint']


def test_resume_continues_an_unfinished_checkpoint(tiny, tmp_path):
    """A periodic (unfinished) checkpoint is refused downstream and continued by --resume."""
    from Crafter_protection import trainTargetNet
    tiny.ensure('data')
    args = ['--preset', 'tiny', '--data_dir', tiny.data_dir, '--params_dir', str(tmp_path)]
    trainTargetNet.main(args + ['--epochs', '1'])
    cfg = tiny.cfg()
    cfg.params_dir = str(tmp_path)
    meta = loader.load_meta(tiny.data_dir)
    ck = torch.load(tmp_path / 'enc.pt', weights_only=True)
    ck['done'] = False
    ck['train'] = ckpt.train_state({'opt': torch.optim.Adam([torch.zeros(1, requires_grad=True)])},
                                   1, 2, {'loss': [1.0]})
    torch.save(ck, tmp_path / 'enc.pt')
    try:
        ckpt.load(cfg, 'enc.pt', 'enc', meta)
        raise AssertionError('an unfinished checkpoint must be refused')
    except SystemExit as e:
        assert '--resume' in str(e.code) and 'epoch 1/2' in str(e.code)
