"""The independent prior of the paper's A2 at the tiny preset: named checkpoints of its own.

train_gan.py --name and trainAmor.py --gan/--name make gan_a2.pt / amor_a2.pt beside the main
prior without touching it, and the attacker loads them by name.
"""
import math

import torch

from common import ckpt
from dataset import loader
from WhiteBoxAttack import trainAmor, train_gan


def test_a2_prior_and_amortizer_are_separate_checkpoints(tiny):
    tiny.ensure('amor')
    cfg, meta = tiny.cfg(), loader.load_meta(tiny.data_dir)
    main_before = ckpt.path(cfg, 'gan.pt').read_bytes()
    train_gan.main(tiny.args + ['--name', 'gan_a2.pt', '--seed', '1', '--width', '12'])
    res = trainAmor.main(tiny.args + ['--gan', 'gan_a2.pt', '--name', 'amor_a2.pt'])
    assert ckpt.path(cfg, 'gan.pt').read_bytes() == main_before, 'the main prior was overwritten'
    for f in ('gan_a2_samples.png', 'gan_a2_report.json', 'amor_a2_report.json'):
        assert ckpt.path(cfg, f).exists(), f
    Enc, G2, _, Amor2 = ckpt.load_attacker(cfg, meta, 'cpu', gan='gan_a2.pt', amor='amor_a2.pt')
    _, G1, _, _ = ckpt.load_attacker(cfg, meta, 'cpu', need_amor=False)
    assert G2.arch['width'] == 12 and G1.arch['width'] != 12
    assert ckpt.load(cfg, 'amor_a2.pt', 'amor', meta)['config']['gan'] == 'gan_a2.pt'
    z = Amor2(Enc(G2(torch.randn(2, G2.latent_dim))))
    assert z.shape == (2, G2.latent_dim) and math.isfinite(res['amortized_start_loss'])
