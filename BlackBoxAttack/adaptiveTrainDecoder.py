"""Step 12: the adaptive black-box attack: keep training Dec on protected features.

Starting from params/dec.pkl, the attacker trains 70 more epochs (paper) on (protected feature,
image) pairs of its own public faces, so the decoder learns to undo the protection. Works for
any protection (crafter_beta<b>, zcrafter_beta<b>, or none). Saves
params/dec_adaptive_<protection>.pkl.

    python BlackBoxAttack/adaptiveTrainDecoder.py --preset demo --protection crafter_beta1
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from BlackBoxAttack.trainDecoder import image_mse  # noqa: E402
from common import ckpt, config, runtime  # noqa: E402
from common.train import fit  # noqa: E402
from Crafter_protection import crafting  # noqa: E402
from dataset import loader  # noqa: E402

# ---- hyperparameters (paper defaults; override with --name value or --preset NAME) ----
HP = dict(
    protection='none',   # none | crafter_beta<b> | zcrafter_beta<b>
    epochs=70,           # paper: 70 more epochs
    batch_size=64,
    lr=1e-3,             # Adam defaults, as the decoder
    n_images=256,        # public queries, one image per identity (a protection's file may hold fewer)
)
PRESETS = {
    'tiny': dict(epochs=1, batch_size=8, n_images=16),
    'demo': dict(epochs=70, n_images=64),
    'celeba-cpu': dict(epochs=70, n_images=256),
}
# -----------------------------------------------------------------------------------------


def adaptive_name(protection):
    return f'dec_adaptive_{protection}.pkl'


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, description=__doc__)
    device, clock = runtime.start(cfg, 'adaptiveTrainDecoder')
    meta = loader.load_meta(cfg.data_dir)
    Enc = ckpt.load_target(cfg, meta, device).Enc
    ck = ckpt.load(cfg, 'dec.pkl', 'dec', meta)
    Dec = ckpt.build(ck, 'Dec', device, eval_mode=False)
    pub = loader.load(cfg.data_dir, 'public', device, meta)
    pub = crafting.public_queries(cfg, cfg.protection, pub, cfg.n_images)
    feats = crafting.protected_features(cfg, cfg.protection, pub, Enc, device)
    print(f'adapting Dec to {cfg.protection} with {len(pub)} protected public pairs')
    opt = torch.optim.Adam(Dec.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    hist = fit(Dec, opt, feats, pub.images, image_mse, cfg.epochs, min(cfg.batch_size, len(pub)),
               gen, 'adapt Dec', {}, 'mse')
    out_file = ckpt.path(cfg, adaptive_name(cfg.protection))
    ckpt.save(out_file, kind='dec', models={'Dec': Dec}, cfg=cfg, meta=meta,
              metrics={'mse_last': hist['mse'][-1], 'protection': cfg.protection,
                       'pairs': len(pub)})
    clock.finish('adaptiveTrainDecoder', mse_last=hist['mse'][-1], pairs=len(pub),
                 saved=str(out_file))


if __name__ == '__main__':
    main()
