"""Step 17: adaptive Feature2ID learns what a protection releases and never does worse than
the clean model on its own held-out images."""
import torch

from Baselines import noise
from common import adaptive, ckpt, config, release
from dataset import loader
from Feature2ID import f2id_adaptive


def _cfg(**kw):
    return config.Config(dict(dict(epochs=40, lr=3e-2, weight_decay=0.0, batch_size=16, seed=0), **kw))


def _clusters(n_ids=5, per_id=8, dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(n_ids, dim, generator=g)
    labels = torch.arange(n_ids).repeat_interleave(per_id)
    return centres[labels] + 0.3 * torch.randn(len(labels), dim, generator=g), labels


def test_holdout_keeps_one_image_of_every_identity_with_two():
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    tr, va = f2id_adaptive.holdout_per_identity(labels, 0)
    assert sorted(labels[va].tolist()) == [0, 1]                 # identity 2 has one image
    assert set(tr.tolist()) | set(va.tolist()) == set(range(6)) and not set(tr.tolist()) & set(va.tolist())


def test_adaptation_learns_a_release_the_clean_model_cannot_read():
    feats, labels = _clusters()
    torch.manual_seed(0)
    clean = torch.nn.Linear(6, 5)
    opt = torch.optim.Adam(clean.parameters(), lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(clean(feats), labels).backward()
        opt.step()
    released = feats.flip(1) * -1.0                              # what the protection releases
    before, _ = f2id_adaptive.accuracy(clean, released, labels)
    net, hist, best, (n_tr, n_va) = f2id_adaptive.adapt(clean, released, labels, _cfg(),
                                                        torch.Generator().manual_seed(0))
    assert n_va == 5 and best > 0
    _, va = f2id_adaptive.holdout_per_identity(labels, 0)
    after, _ = f2id_adaptive.accuracy(net, released[va], labels[va])
    assert hist['val_acc'][0] < 0.6 and after >= 0.8 > before
    assert after == hist['val_acc'][best] == max(hist['val_acc'])


def test_adaptation_never_lowers_held_out_accuracy():
    """Labels the features cannot predict: fine-tuning only overfits, so the unadapted model is
    kept unless an epoch does at least as well on the held-out images."""
    feats, labels = _clusters(seed=1)
    torch.manual_seed(1)
    net = torch.nn.Linear(6, 5)
    shuffled = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(3))]
    _, va = f2id_adaptive.holdout_per_identity(shuffled, 0)
    start, _ = f2id_adaptive.accuracy(net, feats[va], shuffled[va])
    net, hist, best, _ = f2id_adaptive.adapt(net, feats, shuffled, _cfg(), torch.Generator().manual_seed(0))
    end, _ = f2id_adaptive.accuracy(net, feats[va], shuffled[va])
    assert hist['val_acc'][0] == start and end >= start and end == max(hist['val_acc'])


def test_f2id_adaptive_on_noise_features_of_tiny(tiny):
    tiny.ensure('f2id')
    noise.main(tiny.args + ['--sigma', '3', '--split', 'eval_train', '--n_per_id', '0', '--n_images', '0'])
    res = f2id_adaptive.main(tiny.args + ['--protection', 'noise_s3', '--epochs', '6'])
    assert res['val_acc'] >= res['val_acc_unadapted'] and res['n_val'] > 0
    # the saved model is the one whose held-out accuracy was reported
    cfg = tiny.cfg()
    meta = loader.load_meta(tiny.data_dir)
    net = ckpt.build(ckpt.load(cfg, adaptive.f2id_name('noise_s3'), 'f2id', meta), 'f2id')
    train = release.covered(cfg, 'noise_s3', loader.load(tiny.data_dir, 'eval_train', 'cpu', meta))
    feats = release.protected_features(cfg, 'noise_s3', train, None, 'cpu')
    _, va = f2id_adaptive.holdout_per_identity(train.labels, cfg.seed)
    acc, _ = f2id_adaptive.accuracy(net, feats[va], train.labels[va])
    assert abs(acc - res['val_acc']) < 1e-6
