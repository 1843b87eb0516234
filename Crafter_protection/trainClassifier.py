"""Step 14: the training scenario: the cloud model f trained on crafted features.

Trains a fresh cloud network (ResNet-18 layer2 ... fc) on the protected features of private
training images (eval_train) with their attribute labels, tests it on protected features of
held-out images (eval_test), and reports its mean AUC next to the same model trained and tested
on clean features of the same images. Needs the protection's features of both splits
(featureCrafter.py --split eval_train and --split eval_test). Writes
Crafter_result/<run>/<protection>/training_scenario.json.

    python Crafter_protection/trainClassifier.py --preset demo --protection crafter_beta1
"""
import json

import torch
import torch.nn.functional as F

import metrics
from common import ckpt, config, dist, io, release, runtime
from common.train import fit, predict
from models import FeatureClassifier
from dataset import loader

# ---- hyperparameters (paper defaults; override with --name value or --preset NAME) ----
HP = dict(
    protection='crafter_beta1',   # crafter_beta<b> | zcrafter_beta<b>
    epochs=30,           # as the target net (paper: 30)
    batch_size=64,
    lr=1e-3,
    weight_decay=0.0,
)
# what needs more than "finite and >= 0" (common/config.py): counts, learning rates, fractions
RANGES = dict(epochs='>=1', batch_size='>=1', lr='>0')
PRESETS = {
    'tiny': dict(epochs=1, batch_size=8),
    'demo': dict(epochs=15),
    'celeba-cpu': dict(epochs=15),
}
# -----------------------------------------------------------------------------------------


def fit_and_score(train_feats, train_attrs, test_feats, test_attrs, names, cfg, device, desc):
    torch.manual_seed(cfg.seed)
    net = FeatureClassifier(len(names), tuple(train_feats.shape[1:])).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    fit(net, opt, train_feats, train_attrs, F.binary_cross_entropy_with_logits, cfg.epochs,
        cfg.batch_size, torch.Generator().manual_seed(cfg.seed), desc, {})
    scores = predict(net, test_feats)
    return metrics.mean_auc(scores, test_attrs.cpu()), metrics.attribute_aucs(scores, test_attrs.cpu(), names)


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, ranges=RANGES, description=__doc__)
    device, clock = runtime.start(cfg, 'trainClassifier')
    meta = loader.load_meta(cfg.data_dir)
    if not meta.get('attributes'):
        raise SystemExit('error: this dataset has no attributes, so there is no utility to measure')
    Enc = ckpt.load_target(cfg, meta, device).Enc
    res = {'protection': cfg.protection}
    splits = {}
    for name in ('eval_train', 'eval_test'):
        s = release.covered(cfg, cfg.protection, loader.load(cfg.data_dir, name, device, meta))
        splits[name] = (s, release.protected_features(cfg, cfg.protection, s, Enc, device),
                        release.protected_features(cfg, 'none', s, Enc, device))
    (tr, tr_prot, tr_clean), (te, te_prot, te_clean) = splits['eval_train'], splits['eval_test']
    print(f'training scenario: {len(tr)} eval_train and {len(te)} eval_test images')
    res['mean_auc_protected'], res['per_attribute_protected'] = fit_and_score(
        tr_prot, tr.attrs, te_prot, te.attrs, tr.attr_names, cfg, device, 'f on protected')
    res['mean_auc_clean'], res['per_attribute_clean'] = fit_and_score(
        tr_clean, tr.attrs, te_clean, te.attrs, tr.attr_names, cfg, device, 'f on clean')
    res.update(n_train=len(tr), n_test=len(te))
    out = release.run_dir(cfg, cfg.protection) / 'training_scenario.json'
    if dist.is_main():          # under torchrun rank 0 writes, the others wait
        io.write_text(out, json.dumps(res, indent=1) + '\n')
    dist.barrier()
    print(f"training scenario ({cfg.protection}): mean AUC {res['mean_auc_protected']:.4f} on "
          f"protected features vs {res['mean_auc_clean']:.4f} on clean ones")
    clock.finish('trainClassifier', mean_auc_protected=res['mean_auc_protected'],
                 mean_auc_clean=res['mean_auc_clean'], saved=io.rel(out))
    return res


if __name__ == '__main__':
    main()
