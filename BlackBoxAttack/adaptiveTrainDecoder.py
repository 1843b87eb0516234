"""Step 16: the adaptive black-box attack: fine-tune Dec on protected features.

The attacker queries the protection with Q of its own public faces (`n_per_id` per identity, one
by default; the same Q for every protection) and holds out a part of them (`holdout`); it never
sees the oracle or a private image. Starting from the raw decoder params/dec.pkl it trains up to
`epochs` more epochs (paper: 70) on the other (protected feature, image) pairs with the loss of
the adaptive white-box attack (WhiteBoxAttack/adaptiveUpdateG.py): ||Dec(F) - x||^2 plus
`id_weight` times the identity distance of the attacker's own identity model (step 10). After
every epoch it measures the held-out pairs, stops after `patience` epochs without a lower
identity distance (`select`), and keeps the best epoch only if its paired held-out gain over the
raw decoder exceeds `min_gain_se` standard errors; else the raw decoder (epoch 0). So adapting
can only help on the attacker's own data.

Why these settings: docs/DESIGN.md

Works for any protection (none, crafter_beta<b>, zcrafter_beta<b>, noise_s<s>,
advlearn_lambda<l>; the released public features come from the protection's feature file, a
protection that changes the encoder releases through its own Enc). Saves
params/dec_adaptive_<protection>.pkl; its metrics hold the held-out losses before and after.

    python BlackBoxAttack/adaptiveTrainDecoder.py --preset demo --protection crafter_beta1
"""
import copy

import torch

from common import adaptive, ckpt, config, release, runtime
from common.train import fit
from dataset import loader

# ---- hyperparameters (paper defaults; override with --name value or --preset NAME) ----
HP = dict(
    protection='none',   # none | crafter_beta<b> | zcrafter_beta<b> | noise_s<s> | advlearn_lambda<l>
    n_images=256,        # Q: public queries (the same for every protection)
    n_per_id=1,          # public images per identity among them (> 1 when Q exceeds the ids)
    holdout=0.25,        # part of the queries kept for validation (early stopping)
    epochs=70,           # at most this many more epochs (paper: 70)
    patience=10,         # stop after this many epochs without a better held-out loss
    batch_size=32,       # smaller than the decoder's 64: Q = 128 leaves 96 pairs, 3 steps an epoch
    lr=1e-4,             # Adam; fine-tuning at a tenth of the decoder's 1e-3. Demo, Q 128, held-out
                         #   loss raw -> adapted: none 0.00442 -> 0.00442 at 1e-3 (no epoch helped),
                         #   0.00398 at 1e-4; noise_s3 0.01453 -> 0.01195 at 1e-3, 0.01174 at 1e-4
    dec='dec.pkl',       # the raw decoder to start from
    select='identity',   # held-out criterion: identity (1 - cos of the attacker's own identity
                         #   embeddings of Dec(F) and x, step 10) | pixels (||Dec(F) - x||^2)
    id_weight=adaptive.ID_WEIGHT, # weight of that identity distance in the fine-tuning loss (0 = pixels only)
    id_model='attacker_id.pkl',   # the attacker's identity model (step 10; public identities only)
    min_gain_se=1.0,     # keep the adapted Dec only if its paired held-out gain exceeds this many
                         #   standard errors (0: any gain); else the raw decoder
)
# what needs more than "finite and >= 0" (common/config.py): counts, learning rates, fractions
RANGES = dict(holdout='[0,1)', epochs='>=1', patience='>=1', batch_size='>=1', lr='>0')
PRESETS = {
    'tiny': dict(n_images=16, epochs=10, patience=10, batch_size=4, lr=1e-3,
                 min_gain_se=0.0),     # 4 held-out queries: no standard error to speak of
    'demo': dict(n_images=128),
    'celeba-cpu': dict(n_images=256),
}
# -----------------------------------------------------------------------------------------


def decoder_scores(Dec, F, images, idnet=None):
    """adaptive.heldout_scores of Dec(F) against the pairs' images (Dec in eval mode, no gradients)."""
    Dec.eval()
    with torch.no_grad():
        return adaptive.heldout_scores(Dec, F, images, idnet, 256)


def adapt(Dec, F, images, cfg, gen, idnet=None):
    """Fine-tune a copy of Dec on (F, images); returns (best Dec, metrics). Epoch 0 = Dec.
    idnet: the attacker's identity model (adaptive.identity_model), for --select identity / --id_weight."""
    tr, va = adaptive.query_split(len(F), cfg.holdout, cfg.seed)
    tr, va = tr.to(F.device), va.to(F.device)
    Dec = copy.deepcopy(Dec)
    opt = torch.optim.Adam(Dec.parameters(), lr=cfg.lr)

    def val():
        return decoder_scores(Dec, F[va], images[va], idnet)

    sel = adaptive.Selector(cfg.select, Dec, val(), cfg.min_gain_se)
    print(f'held-out {cfg.select} before adapting: {sel.best:.5f} ({len(va)} held out, {len(tr)} to adapt on)')
    hist = {}
    bs = min(cfg.batch_size, len(tr))

    def on_epoch(epoch):
        scores = val()
        better = sel.record(epoch, Dec, scores)
        print(f'epoch {epoch}: held-out pixels {scores["pixels"]:.5f}, identity '
              f'{scores["identity"]:.4f}' + (' (best)' if better else ''))

    def loss_fn(recon, x):
        return adaptive.attack_loss(recon, x, idnet, cfg.id_weight)

    for epoch in range(cfg.epochs):      # one epoch at a time, so it can stop early
        fit(Dec, opt, F[tr], images[tr], loss_fn, epoch + 1, bs, gen, 'adapt Dec', hist, 'train',
            start=epoch, on_epoch=on_epoch)
        if sel.waited >= cfg.patience:
            print(f'no better held-out {cfg.select} for {cfg.patience} epochs: stopping after epoch {epoch + 1}')
            break
    res = sel.finish(Dec)
    Dec.eval()
    return Dec, {**res, 'epochs_run': len(hist.get('train', [])),
                 'train_history': hist.get('train', []), 'id_weight': cfg.id_weight,
                 'pairs': len(F), 'adapt_pairs': len(tr), 'heldout_pairs': len(va)}


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, ranges=RANGES, description=__doc__)
    if not 0 < cfg.holdout < 1:
        raise config.ConfigError(f'--holdout {cfg.holdout}: expected a fraction between 0 and 1')
    device, clock = runtime.start(cfg, 'adaptiveTrainDecoder')
    meta = loader.load_meta(cfg.data_dir)
    Enc = ckpt.load_target(cfg, meta, device, release.enc_name(cfg.protection)).Enc
    ck = ckpt.load(cfg, cfg.dec, 'dec', meta)
    Dec = ckpt.build(ck, 'Dec', device, eval_mode=False)
    pub = loader.load(cfg.data_dir, 'public', device, meta)
    pub = release.public_queries(cfg, cfg.protection, pub, cfg.n_images, cfg.n_per_id)
    feats = release.protected_features(cfg, cfg.protection, pub, Enc, device)
    print(f'adapting Dec to {cfg.protection} with {len(pub)} protected public pairs')
    idnet = adaptive.identity_model(cfg, meta, device)
    gen = torch.Generator().manual_seed(cfg.seed)
    Dec_a, res = adapt(Dec, feats, pub.images.to(device), cfg, gen, idnet)
    res['protection'] = cfg.protection
    print(f"held-out {cfg.select}: unadapted {res['heldout_loss_unadapted']:.5f} -> adapted "
          f"{res['heldout_loss_adapted']:.5f} (epoch {res['best_epoch']} of {res['epochs_run']})")
    out_file = adaptive.save_adapted(cfg, meta, 'dec', {'Dec': Dec_a}, res, adaptive.dec_name(cfg.protection),
                            'adaptive Dec')
    clock.finish('adaptiveTrainDecoder', pairs=len(pub), saved=str(out_file),
                 **{k: res[k] for k in ('heldout_loss_unadapted', 'heldout_loss_adapted', 'best_epoch')})
    return res


if __name__ == '__main__':
    main()
