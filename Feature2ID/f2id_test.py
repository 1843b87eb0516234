"""Score a feature file with Feature2ID (identity straight from features).

Takes any saved feature file of private images (raw by default; e.g. a Crafter result's
features.pt) and reports top-1 / top-5 identity accuracy of params/f2id.pt on it.

    python Feature2ID/f2id_test.py --preset demo --features Crafter_result/demo/crafter_beta1/features.pt
"""

import metrics
from common import ckpt, config, runtime
from common.train import encode, predict
from dataset import loader

# ---- hyperparameters --------------------------------------------------------------------
HP = dict(
    features='',         # feature file to score ('' = raw Enc features of --split)
    split='eval_test',   # the private split the features belong to
)
PRESETS = {}
# -----------------------------------------------------------------------------------------


def load_f2id(cfg, meta, device):
    return ckpt.build(ckpt.load(cfg, 'f2id.pt', 'f2id', meta), 'f2id', device)


def score(net, feats, split):
    acc = metrics.topk_accuracy(predict(net, feats.to(next(net.parameters()).device)),
                                split.labels.cpu(), (1, 5))
    return {'top1': acc[1], 'top5': acc[5], 'chance': 1 / split.n_ids, 'n': len(split)}


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, description=__doc__)
    if cfg.split not in ('eval_train', 'eval_test', 'private'):
        raise config.ConfigError(f'--split {cfg.split!r}: Feature2ID scores private images '
                                 '(eval_test, eval_train or private)')
    device, clock = runtime.start(cfg, 'f2id_test')
    meta = loader.load_meta(cfg.data_dir)
    net = load_f2id(cfg, meta, device)
    split = loader.load(cfg.data_dir, cfg.split, device, meta)
    if cfg.features:
        names = set(ckpt.load_features(cfg.features)['names'])
        split = split.subset([i for i, n in enumerate(split.names) if n in names])
        feats = ckpt.aligned_features(cfg.features, split)
    else:
        feats = encode(ckpt.load_target(cfg, meta, device).Enc, split, device)
    res = score(net, feats, split)
    print(f"Feature2ID on {cfg.features or 'raw ' + cfg.split + ' features'}: top-1 {res['top1']:.4f}, "
          f"top-5 {res['top5']:.4f} (chance {res['chance']:.4f}, {res['n']} images)")
    clock.finish('f2id_test', **res)
    return res


if __name__ == '__main__':
    main()
