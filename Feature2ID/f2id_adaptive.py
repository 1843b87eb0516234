"""Step 17: adaptive Feature2ID, the identity classifier adapted to what a protection releases.

The attacker's labelled knowledge of the private identities is the eval_train split (the split
the identity oracle is trained on). Here the attacker sees the protection's *released*
features of those images (made by the protection's training-scenario path, e.g.
`featureCrafter.py --split eval_train`), starts from the clean Feature2ID (params/f2id.pt) and
fine-tunes on part of them, holding out one image per identity (identities with >= 2 images)
for validation. After every epoch it scores the held-out images and keeps the best model,
the unadapted one included, so adapting can only help on the attacker's own data.
Saves params/f2id_adaptive_<protection>.pt (kind f2id); evaluate.py scores it on eval_test.

    python Feature2ID/f2id_adaptive.py --preset demo --protection noise_s3
"""
import copy

import torch
import torch.nn.functional as F

from common import adaptive, ckpt, config, dist, release, runtime
from common.train import fit, predict
from dataset import loader

# ---- hyperparameters (not in the paper: the paper's Feature2ID never adapts) ----
HP = dict(
    protection='',       # e.g. crafter_beta0.01, noise_s3, none
    epochs=30,           # fine-tuning epochs (the best one on the held-out images is kept)
    lr=3e-4,             # Adam, a third of f2id_train's (fine-tuning from the clean model)
    weight_decay=1e-4,
    batch_size=32,
    n_per_id=0,          # eval_train images per identity (0 = all): the Makefile's TRAIN, so the
    n_images=0,          # unprotected release gets the same labelled knowledge as the others
)
# what needs more than "finite and >= 0" (common/config.py): counts, learning rates, fractions
RANGES = dict(epochs='>=1', lr='>0', batch_size='>=1')
PRESETS = {
    'tiny': dict(epochs=3, batch_size=8),
    'demo': dict(epochs=30),
    'celeba-cpu': dict(epochs=30),
}
# -----------------------------------------------------------------------------------------


def holdout_per_identity(labels, seed):
    """(train_idx, val_idx): one image of every identity with >= 2 images is held out."""
    g = torch.Generator().manual_seed(seed)
    labels = labels.cpu()
    train, val = [], []
    for lab in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == lab).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        if len(idx) >= 2:
            val.append(idx[:1])
            train.append(idx[1:])
        else:
            train.append(idx)

    def cat(parts):
        return torch.cat(parts).sort().values if parts else torch.zeros(0, dtype=torch.long)
    return cat(train), cat(val)


def accuracy(net, feats, labels):
    if len(feats) == 0:
        return float('nan'), float('nan')
    logits = predict(net, feats)
    return ((logits.argmax(1) == labels.cpu()).float().mean().item(),
            F.cross_entropy(logits, labels.cpu()).item())


def adapt(net, feats, labels, cfg, gen):
    """Fine-tune net on feats[train] and keep the best epoch on feats[val] (epoch 0 = as given).

    Returns (best net, history with val_acc / val_loss per epoch, best epoch)."""
    tr, va = holdout_per_identity(labels, cfg.seed)
    ftr, ltr, fva, lva = feats[tr], labels[tr], feats[va], labels[va]
    acc, loss = accuracy(net, fva, lva)
    hist = {'val_acc': [acc], 'val_loss': [loss]}
    best, best_key, best_epoch = copy.deepcopy(net.state_dict()), (acc, -loss), 0
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    for epoch in range(1, cfg.epochs + 1):
        fit(net, opt, ftr, ltr, F.cross_entropy, epoch, min(cfg.batch_size, len(ftr)), gen,
            'adaptive Feature2ID', hist, 'loss', epoch - 1)
        acc, loss = accuracy(net, fva, lva)
        hist['val_acc'].append(acc)
        hist['val_loss'].append(loss)
        if (acc, -loss) > best_key:          # more held-out hits, then lower held-out loss
            best, best_key, best_epoch = copy.deepcopy(net.state_dict()), (acc, -loss), epoch
    net.load_state_dict(best)
    net.eval()
    return net, hist, best_epoch, (len(tr), len(va))


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, ranges=RANGES, description=__doc__)
    if not cfg.protection:
        raise config.ConfigError('--protection NAME is required (e.g. noise_s3, crafter_beta0.01, none)')
    device, clock = runtime.start(cfg, 'f2id_adaptive')
    meta = loader.load_meta(cfg.data_dir)
    ck = ckpt.load(cfg, 'f2id.pt', 'f2id', meta)
    net = ckpt.build(ck, 'f2id', device, eval_mode=False)
    for p in net.parameters():
        p.requires_grad_(True)
    train = loader.load(cfg.data_dir, 'eval_train', device, meta)
    train = release.covered(cfg, cfg.protection, release.select(train, cfg))
    Enc = ckpt.load_target(cfg, meta, device, release.enc_name(cfg.protection)).Enc
    feats = release.protected_features(cfg, cfg.protection, train, Enc, device)
    labels = train.labels.to(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    net, hist, best_epoch, (n_tr, n_va) = adapt(net, feats, labels, cfg, gen)
    res = {'protection': cfg.protection, 'n_train': n_tr, 'n_val': n_va,
           'val_acc_unadapted': hist['val_acc'][0], 'val_acc': hist['val_acc'][best_epoch],
           'best_epoch': best_epoch}
    print(f"adaptive Feature2ID on {cfg.protection}: held-out top-1 {res['val_acc_unadapted']:.4f} "
          f"(clean model) -> {res['val_acc']:.4f} (epoch {best_epoch}; {n_tr} train / {n_va} held-out "
          f"eval_train images)")
    out_file = ckpt.path(cfg, adaptive.f2id_name(cfg.protection))
    if dist.is_main():          # under torchrun rank 0 writes, the others wait
        ckpt.save(out_file, kind='f2id', models={'f2id': net}, cfg=cfg, meta=meta,
                  metrics={**res, 'history': hist})
    dist.barrier()
    clock.finish('f2id_adaptive', out_file.with_suffix('.json'), **res)
    return res


if __name__ == '__main__':
    main()
