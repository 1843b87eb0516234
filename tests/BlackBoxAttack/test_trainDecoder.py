"""Step 6 at the tiny preset: the decoder maps features to images."""
import torch

from common import ckpt
from dataset import loader


def test_decoder_trains_and_decodes(tiny):
    res = tiny.ensure('dec')
    assert 0.0 <= res['eval_acc'] <= 1.0
    meta = loader.load_meta(tiny.data_dir)
    cfg = tiny.cfg()
    Enc = ckpt.load_target(cfg, meta, 'cpu').Enc
    Dec = ckpt.build(ckpt.load(cfg, 'dec.pkl', 'dec', meta), 'Dec')
    x = torch.rand(2, 3, meta['img_size'], meta['img_size'])
    assert Dec(Enc(x)).shape == x.shape
