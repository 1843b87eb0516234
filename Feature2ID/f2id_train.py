"""Step 8: Feature2ID, a classifier from released features straight to private identity.

A fresh cloud network (ResNet-18 layer2 ... fc) trained on Enc features of eval_train images
with their identities; reports top-1 / top-5 on raw eval_test features. Saves params/f2id.pt.
Score any saved feature file (e.g. protected features) with Feature2ID/f2id_test.py.

    python Feature2ID/f2id_train.py --preset demo

`--split public` (the defender's side, step 11's identity term): the same network trained on
Enc features of the PUBLIC identities (never a private image or label), tested on one held-out
public image per identity. Crafter (`--gamma`) pushes F's embedding in it away from f0's.

    python Feature2ID/f2id_train.py --preset demo --split public    # -> params/demo/f2id_public.pt
"""

import torch
import torch.nn.functional as F

import metrics
from common import ckpt, config, dist, plots, runtime
from common.train import encode, fit, predict
from models import FeatureClassifier
from dataset import loader

# ---- hyperparameters (paper defaults; override with --name value or --preset NAME) ----
HP = dict(
    epochs=60,           # not stated in the paper
    batch_size=64,
    lr=1e-3,             # Adam, as the oracle
    weight_decay=1e-4,
    resume=False,
    split='eval_train',  # eval_train: the attacker's Feature2ID (f2id.pt) | public: the defender's (f2id_public.pt)
)
# what needs more than "finite and >= 0" (common/config.py): counts, learning rates, fractions
RANGES = dict(epochs='>=1', batch_size='>=1', lr='>0')
PRESETS = {
    'tiny': dict(epochs=1, batch_size=32),
    'demo': dict(epochs=6),
    'celeba-cpu': dict(epochs=15),
}
# -----------------------------------------------------------------------------------------


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, ranges=RANGES, description=__doc__)
    device, clock = runtime.start(cfg, 'f2id_train')
    meta = loader.load_meta(cfg.data_dir)
    if cfg.split not in ('eval_train', 'public'):
        raise config.ConfigError(f"--split {cfg.split!r}: expected 'eval_train' or 'public'")
    target = ckpt.load_target(cfg, meta, device)
    name = 'f2id.pt' if cfg.split == 'eval_train' else 'f2id_public.pt'
    if cfg.split == 'public':       # held-out public images, the defender's own check
        from Image2ID.evalTrain import public_split
        train, test = public_split(loader.load(cfg.data_dir, 'public', device, meta), cfg.seed)
    else:
        train = loader.load(cfg.data_dir, 'eval_train', device, meta)
        test = loader.load(cfg.data_dir, 'eval_test', device, meta)
    # features stay on the CPU, fit / predict move one batch at a time to the device
    f_train, f_test = (encode(target.Enc, s, device, out='cpu') for s in (train, test))
    net = FeatureClassifier(train.n_ids, target.feat_shape).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)      # saved and restored with --resume
    start, hist = ckpt.resume(cfg, name, 'f2id', meta, {'f2id': net}, {'opt': opt},
                              generators={'data': gen})
    out_file = ckpt.path(cfg, name)

    def periodic(epoch):
        if epoch < cfg.epochs:
            ckpt.save(out_file, kind='f2id', models={'f2id': net}, cfg=cfg, meta=meta, done=False,
                      train=ckpt.train_state({'opt': opt}, epoch, cfg.epochs, hist,
                                             generators={'data': gen}))

    fit(net, opt, f_train, train.labels, F.cross_entropy, cfg.epochs, cfg.batch_size, gen,
        'Feature2ID', hist, 'loss', start, periodic)
    acc = metrics.topk_accuracy(predict(net, f_test), test.labels.cpu(), (1, 5))
    res = {'top1': acc[1], 'top5': acc[5], 'chance': 1 / test.n_ids, 'n_test': len(test)}
    on = 'eval_test' if cfg.split == 'eval_train' else 'held-out public'
    print(f'Feature2ID on raw {on} features: top-1 {acc[1]:.4f}, top-5 {acc[5]:.4f} '
          f'(chance {1 / test.n_ids:.4f})')
    if dist.is_main():          # under torchrun rank 0 writes, the others wait
        ckpt.save(out_file, kind='f2id', models={'f2id': net}, cfg=cfg, meta=meta, metrics=res)
        plots.save_curves({'train loss': hist['loss']}, out_file.with_name(name.replace('.pt', '_loss.png')),
                          'Feature2ID', xlabel='epoch')
        cfg.save(out_file.with_name(name.replace('.pt', '_config.json')))
    dist.barrier()
    clock.finish('f2id_train', out_file.with_name(name.replace('.pt', '_report.json')), **res)
    return res


if __name__ == '__main__':
    main()
