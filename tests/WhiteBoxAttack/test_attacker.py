"""Steps 5-6 at the tiny preset: the amortizer and the white-box attack."""
import torch

from common import ckpt
from dataset import loader
from WhiteBoxAttack.attacker import feature_mse, invert


def test_amortizer_maps_features_to_latents(tiny):
    res = tiny.ensure('amor')
    assert all(v >= 0 for v in res.values())
    meta = loader.load_meta(tiny.data_dir)
    Enc, G, D, Amor = ckpt.load_attacker(tiny.cfg(), meta, 'cpu')
    f = Enc(torch.rand(4, 3, meta['img_size'], meta['img_size']))
    assert Amor(f).shape == (4, G.latent_dim)


def test_inversion_lowers_the_feature_mse(tiny):
    tiny.ensure('amor')
    meta = loader.load_meta(tiny.data_dir)
    Enc, G, D, Amor = ckpt.load_attacker(tiny.cfg(), meta, 'cpu')
    torch.manual_seed(0)
    F = Enc(G(torch.randn(8, G.latent_dim)))
    z0 = torch.randn(8, G.latent_dim)
    before = feature_mse(Enc, G, z0, F).mean().item()
    _, after = invert(Enc, G, F, z0, steps=30, lr=5e-2)
    assert after.mean().item() < before


def test_attack_cli_reports_scores_and_writes_reconstructions(tiny):
    report = tiny.ensure('attack')
    for mode in ('random', 'amortized'):
        assert 0.0 <= report[mode]['eval_acc'] <= 1.0
        assert -1.0 <= report[mode]['ssim'] <= 1.0
    out = tiny.root / 'results'
    assert list(out.rglob('recon_random.pt')) and list(out.rglob('grid_amortized.png'))
