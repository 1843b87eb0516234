"""Step 7 at the tiny preset: the decoder maps features to images."""
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


def test_decoder_name_and_encoder_flags(tiny):
    """--name writes another decoder beside dec.pkl; --enc names the target net it inverts."""
    tiny.ensure('dec')
    from BlackBoxAttack import trainDecoder
    cfg, meta = tiny.cfg(), loader.load_meta(tiny.data_dir)
    before = ckpt.path(cfg, 'dec.pkl').read_bytes()
    trainDecoder.main(tiny.args + ['--enc', 'enc.pt', '--name', 'dec_other.pkl'])
    assert ckpt.path(cfg, 'dec.pkl').read_bytes() == before
    ck = ckpt.load(cfg, 'dec_other.pkl', 'dec', meta)
    assert ck['config']['enc'] == 'enc.pt' and ckpt.path(cfg, 'dec_other_report.json').exists()
    try:
        trainDecoder.main(tiny.args + ['--enc', 'missing_enc.pt', '--name', 'dec_x.pkl'])
        raise AssertionError('a missing encoder must be refused')
    except SystemExit as e:
        assert 'missing_enc.pt' in str(e.code)
