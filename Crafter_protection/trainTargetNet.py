"""Step 2: train the split target network (ResNet-18 cut after layer1) on public images.

Enc = conv1 ... layer1 runs on the edge; f = layer2 ... fc classifies the dataset's binary
attributes in the cloud (BCE). Reports the mean attribute AUC on held-out public images and on
the private images. Saves params/enc.pt (encoder and classifier).

    python Crafter_protection/trainTargetNet.py --preset demo
"""

import torch
import torch.nn.functional as F
from tqdm import tqdm

import metrics
from common import ckpt, config, dist, plots, runtime
from models import TargetNet
from dataset import loader

# ---- hyperparameters (paper defaults; override with --name value or --preset NAME) ----
HP = dict(
    epochs=30,           # paper: 30 epochs
    batch_size=64,       # paper: 64
    lr=1e-3,             # Adam
    weight_decay=0.0,
    whole=True,          # train the whole net; false = only the cloud head f (Enc frozen at init)
    holdout=0.1,         # share of public images held out for the AUC report
    flip=True,           # random horizontal flips
    resume=False,
)
# what needs more than "finite and >= 0" (common/config.py): counts, learning rates, fractions
RANGES = dict(epochs='>=1', batch_size='>=1', lr='>0', holdout='[0,1)')
PRESETS = {
    'tiny': dict(epochs=1, batch_size=32),
    'demo': dict(epochs=2, batch_size=64),
    'celeba-cpu': dict(epochs=8, batch_size=64),
}
# -----------------------------------------------------------------------------------------


@torch.no_grad()
def predict(net, x_u8, batch_size=256):
    net.eval()
    out = [net(x_u8[i:i + batch_size].float().div_(255)) for i in range(0, len(x_u8), batch_size)]
    return torch.cat(out).float().cpu()


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, ranges=RANGES, description=__doc__)
    device, clock = runtime.start(cfg, 'trainTargetNet')
    meta = loader.load_meta(cfg.data_dir)
    pub = loader.load(cfg.data_dir, 'public', device, meta).with_attrs()   # LFW: not every public image has them
    pvt = loader.load(cfg.data_dir, 'private', device, meta)
    use_attrs = len(pub.attr_names) > 0
    if not use_attrs:
        print('note: this dataset has no attributes; the target task is public identity '
              'classification and utility (AUC) metrics are skipped')
    n_out = len(pub.attr_names) if use_attrs else pub.n_ids
    train_idx, held_idx = loader.holdout(pub, cfg.holdout, cfg.seed)

    net = TargetNet(n_out, meta['img_size']).to(device)
    params = net.parameters() if cfg.whole else net.f.parameters()
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)    # batch order and augmentation
    # --resume restores it with the weights and optimizer: the same model as an uninterrupted run
    start, hist = ckpt.resume(cfg, 'enc.pt', 'enc', meta, {'net': net}, {'opt': opt},
                              generators={'data': gen})
    hist = hist or {'loss': []}
    model = dist.wrap(net, device)   # DDP under torchrun
    out_file = ckpt.path(cfg, 'enc.pt')

    for epoch in range(start, cfg.epochs):
        net.train()
        if not cfg.whole:
            net.Enc.eval()
        bar = tqdm(loader.batches(len(train_idx), cfg.batch_size, True, gen, drop_last=True),
                   total=len(train_idx) // cfg.batch_size, desc=f'epoch {epoch + 1}/{cfg.epochs}',
                   disable=not dist.is_main())
        total = 0.0
        for n, b in enumerate(bar, 1):
            idx = train_idx[b]
            x = loader.augment(pub.x(idx.to(device)), gen, flip=cfg.flip)
            if dist.world() > 1:    # this rank's share of the global batch, augmented whole
                mine = dist.local(torch.arange(len(idx)))
                x, idx = x[mine.to(device)], idx[mine]
            logits = model(x)
            if use_attrs:
                loss = F.binary_cross_entropy_with_logits(logits, pub.attrs[idx.to(device)])
            else:
                loss = F.cross_entropy(logits, pub.labels[idx.to(device)])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()
            bar.set_postfix(loss=f'{total / n:.4f}')
        hist['loss'].append(dist.mean(total / max(1, n)))
        if dist.is_main():          # under torchrun rank 0 writes, the others wait
            ckpt.save(out_file, kind='enc', models={'net': net}, cfg=cfg, meta=meta,
                      train=ckpt.train_state({'opt': opt}, epoch + 1, cfg.epochs, hist,
                                             generators={'data': gen}),
                      done=False)
        dist.barrier()

    dist.sync(net)                  # rank 0's BatchNorm statistics on every rank
    held = pub.subset(held_idx)
    res = {}
    if use_attrs:
        res['auc_public_heldout'] = metrics.mean_auc(predict(net, held.images), held.attrs.cpu())
        pvt_scores = predict(net, pvt.images)
        res['auc_private'] = metrics.mean_auc(pvt_scores, pvt.attrs.cpu())
        res['auc_private_per_attribute'] = metrics.attribute_aucs(pvt_scores, pvt.attrs.cpu(),
                                                                  pvt.attr_names)
    else:
        acc = metrics.topk_accuracy(predict(net, held.images), held.labels.cpu(), (1,))
        res['heldout_identity_top1'] = acc[1]
    if dist.is_main():              # under torchrun rank 0 writes, the others wait
        ckpt.save(out_file, kind='enc', models={'net': net}, cfg=cfg, meta=meta, metrics=res)
        plots.save_curves({'train loss': hist['loss']}, out_file.with_name('enc_loss.png'),
                          'target net', xlabel='epoch')
        cfg.save(out_file.with_name('enc_config.json'))
    dist.barrier()
    short = {k: v for k, v in res.items() if not isinstance(v, dict)}
    clock.finish('trainTargetNet', out_file.with_name('enc_report.json'), **short,
                 images_per_s=round(len(train_idx) * (cfg.epochs - start) / max(clock.summary()['wall_s'], 1e-9), 1))
    return res


if __name__ == '__main__':
    main()
