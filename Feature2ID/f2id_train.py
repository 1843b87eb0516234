"""Step 8: Feature2ID, a classifier from released features straight to private identity.

A fresh cloud network (ResNet-18 layer2 ... fc) trained on Enc features of eval_train images
with their identities; reports top-1 / top-5 on raw eval_test features. Saves params/f2id.pt.
Score any saved feature file (e.g. protected features) with Feature2ID/f2id_test.py.

    python Feature2ID/f2id_train.py --preset demo
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
    target = ckpt.load_target(cfg, meta, device)
    train = loader.load(cfg.data_dir, 'eval_train', device, meta)
    test = loader.load(cfg.data_dir, 'eval_test', device, meta)
    # features stay on the CPU, fit / predict move one batch at a time to the device
    f_train, f_test = (encode(target.Enc, s, device, out='cpu') for s in (train, test))
    net = FeatureClassifier(train.n_ids, target.feat_shape).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)      # saved and restored with --resume
    start, hist = ckpt.resume(cfg, 'f2id.pt', 'f2id', meta, {'f2id': net}, {'opt': opt},
                              generators={'data': gen})
    out_file = ckpt.path(cfg, 'f2id.pt')

    def periodic(epoch):
        if epoch < cfg.epochs:
            ckpt.save(out_file, kind='f2id', models={'f2id': net}, cfg=cfg, meta=meta, done=False,
                      train=ckpt.train_state({'opt': opt}, epoch, cfg.epochs, hist,
                                             generators={'data': gen}))

    fit(net, opt, f_train, train.labels, F.cross_entropy, cfg.epochs, cfg.batch_size, gen,
        'Feature2ID', hist, 'loss', start, periodic)
    acc = metrics.topk_accuracy(predict(net, f_test), test.labels.cpu(), (1, 5))
    res = {'top1': acc[1], 'top5': acc[5], 'chance': 1 / test.n_ids, 'n_test': len(test)}
    print(f'Feature2ID on raw eval_test features: top-1 {acc[1]:.4f}, top-5 {acc[5]:.4f} '
          f'(chance {1 / test.n_ids:.4f})')
    if dist.is_main():          # under torchrun rank 0 writes, the others wait
        ckpt.save(out_file, kind='f2id', models={'f2id': net}, cfg=cfg, meta=meta, metrics=res)
        plots.save_curves({'train loss': hist['loss']}, out_file.with_name('f2id_loss.png'),
                          'Feature2ID', xlabel='epoch')
        cfg.save(out_file.with_name('f2id_config.json'))
    dist.barrier()
    clock.finish('f2id_train', out_file.with_name('f2id_report.json'), **res)
    return res


if __name__ == '__main__':
    main()
