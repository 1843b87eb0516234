"""Step 4 at the tiny preset: a generator of the dataset's image size and latent size."""
import torch

from common import ckpt
from dataset import loader


def test_gan_saves_generator_critic_and_samples(tiny):
    tiny.ensure('gan')
    cfg = tiny.cfg()
    meta = loader.load_meta(tiny.data_dir)
    G, D = ckpt.load_gan(cfg, meta, 'cpu')
    img = G(torch.randn(3, G.latent_dim))
    assert img.shape == (3, 3, meta['img_size'], meta['img_size'])
    assert img.min() >= 0 and img.max() <= 1
    assert D(img).shape == (3,)
    assert (ckpt.path(cfg, 'gan_samples.png')).exists()


def test_mismatched_latent_size_names_the_command(tiny):
    tiny.ensure('gan')
    meta = loader.load_meta(tiny.data_dir)
    try:
        ckpt.load(tiny.cfg(), 'gan.pt', 'gan', meta, expect={'latent_dim': 999})
        raise AssertionError('a mismatched generator must be refused')
    except SystemExit as e:
        assert 'latent_dim' in str(e.code) and 'train_gan.py' in str(e.code)
