"""NoPeek, the distance-correlation baseline (Vepakomma et al. 2020, "NoPeek: Information leakage
reduction to share activations in distributed deep learning").

Starts from the trained target net params/enc.pt (Enc and f). Enc and f train together on the
defender's private training images to minimise
    BCE(f(Enc(x)), y)  +  alpha * dCor(x, Enc(x)),
dCor being the sample distance correlation between the flattened images of a batch and their
flattened features: 0 when they are independent, 1 when z is a similarity transform of x. No
adversary is trained: NoPeek removes what any decoder could use (statistical dependence on x),
not what one decoder uses. alpha is the trade-off knob (the paper sweeps it; alpha = 0 only
fine-tunes for utility). dCor is a per-batch statistic, so the batch size is part of the
defence: the held-out dCor reported is the mean over held-out batches of the same size. (This
sample dCor, the paper's, is biased towards 1 for small batches of high-dimensional data even
when they are independent: compare values at equal batch size, not against 0.)

Outputs (protection name nopeek_alpha<alpha>):
  params/nopeek_alpha<alpha>.pt        kind 'enc', model 'net' (Enc_alpha and f_alpha, the arch of
                                       enc.pt); metrics, per-epoch history
  <crafted_dir>/<run tag>/nopeek_alpha<alpha>/features_<split>.pt   Enc_alpha(x) of eval_test,
      eval_train and the public queries (one per identity, the first n_queries), read like any
      protection's features. Attack it like AdvLearn (--enc nopeek_alpha<alpha>.pt).

    python Baselines/nopeek.py --preset demo --alpha 0.5
"""
import torch
import torch.nn.functional as F
from tqdm import tqdm

import metrics
from common import ckpt, config, dist, release, runtime
from common.train import encode, predict
from dataset import loader

PROTECTION = dict(prefix='nopeek_alpha', knob='alpha', label='NoPeek (alpha)', style='v-',
                  own_encoder=True, randomised=False, order=50,
                  make='Baselines/nopeek.py --alpha {value}',
                  # fixed before any result: dCor is ~0.9 on raw features, BCE ~0.3-0.7, so alpha 2
                  # weighs them alike; `make sweep` adds a weaker and a stronger point (demo: its one)
                  points={'tiny': [5], 'celeba-cpu': [2], 'paper': [2]},
                  sweep={'demo': [2], 'celeba-cpu': [0.5, 8]})

# ---- hyperparameters (paper-ish defaults; override with --name value or --preset NAME) ----
HP = dict(
    alpha=0.5,           # weight of dCor(x, Enc(x)) against the BCE (the paper sweeps it)
    epochs=20,           # joint fine-tuning epochs of Enc and f from enc.pt
    batch_size=64,       # dCor is estimated per batch: larger batches, less biased estimate
    lr=1e-3,             # Adam on Enc and f (as AdvLearn)
    train_split='eval_train',  # the defender's private training images (never eval_test)
    holdout=0.1,         # share of train_split held out for the per-epoch AUC and dCor
    flip=True,           # random horizontal flips, as the target net's training
    n_per_id=0,          # eval_test / eval_train images released per identity (0 = all)
    n_queries=256,       # public queries released, one image per identity (Makefile NPUB)
    resume=False,
)
# what needs more than "finite and >= 0" (common/config.py): counts, learning rates, fractions
RANGES = dict(epochs='>=1', batch_size='>=1', lr='>0', holdout='[0,1)')
PRESETS = {
    # tiny: ~40 training images; a larger held-out share so its dCor batch is not 4 images
    'tiny': dict(epochs=3, batch_size=8, holdout=0.25, n_queries=16),
    # CPU budgets: demo (~1.6k training images) ~1.5 minutes of one thread; celeba-cpu as long
    # as AdvLearn's (10 epochs)
    'demo': dict(epochs=10, batch_size=32, n_queries=64),
    'celeba-cpu': dict(epochs=10, batch_size=64, n_queries=256),
}
# -----------------------------------------------------------------------------------------


def distance_correlation(x, z, eps=1e-9):
    """Sample distance correlation (Szekely et al. 2007) of two batches, rows = samples: double-
    centred pairwise Euclidean distances A, B; dCov^2 = mean(A * B);
    dCor = sqrt(dCov^2(x, z) / sqrt(dCov^2(x, x) dCov^2(z, z))). Differentiable; in [0, 1]."""
    def centred(t):
        t = t.flatten(1)
        t = t - t.mean(0)     # distances do not change; cdist's |a|^2 + |b|^2 - 2ab cancels less
        d = torch.cdist(t, t)
        return d - d.mean(0, keepdim=True) - d.mean(1, keepdim=True) + d.mean()
    a, b = centred(x), centred(z)
    dcov_xz, dcov_xx, dcov_zz = (a * b).mean(), (a * a).mean(), (b * b).mean()
    return (dcov_xz / ((dcov_xx * dcov_zz).sqrt() + eps)).clamp_min(eps).sqrt()


@torch.no_grad()
def evaluate(net, split, batch_size, device):
    """Mean AUC of f on Enc features and mean per-batch dCor(x, Enc(x)) (eval mode)."""
    feats, auc = release.encoded_auc(net, split, device)
    # fixed, unshuffled batches of the training batch size: the same statistic as the loss
    parts = [(distance_correlation(split.x(b.to(device)), feats[b.to(device)]).item(), len(b))
             for b in loader.batches(len(split), batch_size, drop_last=True)]
    return auc, sum(d * n for d, n in parts) / sum(n for _, n in parts)


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, ranges=RANGES, description=__doc__)
    if cfg.alpha < 0:
        raise config.ConfigError(f'--alpha {cfg.alpha}: expected a number >= 0')
    protection = release.name('nopeek_alpha', cfg.alpha)
    device, clock = runtime.start(cfg, 'nopeek')
    meta = loader.load_meta(cfg.data_dir)
    src, net, net0, train, held = release.own_encoder_start(cfg, meta, device, 'NoPeek')
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    out_file = ckpt.path(cfg, f'{protection}.pt')
    start, hist = ckpt.resume(cfg, out_file.name, 'enc', meta, {'net': net}, {'opt': opt},
                              generators={'gen': gen})
    hist = hist or {k: [] for k in ('bce_train', 'dcor_train', 'auc_heldout', 'dcor_heldout')}
    if 'start' not in hist:    # before any NoPeek epoch (kept across --resume)
        hist['start'] = list(evaluate(net, held, cfg.batch_size, device))
    auc0, dcor0 = hist['start']
    print(f'{protection}: {len(train)} {cfg.train_split} images for (Enc, f) ({len(held)} held '
          f'out: start AUC {auc0:.4f}, dCor(x, Enc(x)) {dcor0:.4f})')

    for epoch in range(start, cfg.epochs):
        net.train()
        tot_bce = tot_dcor = n = 0
        bar = tqdm(loader.batches(len(train), cfg.batch_size, True, gen, drop_last=True),
                   total=len(train) // cfg.batch_size, desc=f'NoPeek epoch {epoch + 1}/{cfg.epochs}')
        for b in bar:
            b = b.to(device)
            x = loader.augment(train.x(b), gen, flip=cfg.flip)
            z = net.Enc(x)
            bce = F.binary_cross_entropy_with_logits(net.f(z), train.attrs[b])
            dcor = distance_correlation(x, z)     # of the images Enc actually saw
            loss = bce + cfg.alpha * dcor
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot_bce, tot_dcor, n = tot_bce + bce.item(), tot_dcor + dcor.item(), n + 1
            bar.set_postfix(bce=f'{tot_bce / n:.4f}', dcor=f'{tot_dcor / n:.4f}')
        hist['bce_train'].append(tot_bce / max(n, 1))
        hist['dcor_train'].append(tot_dcor / max(n, 1))
        auc, dcor = evaluate(net, held, cfg.batch_size, device)
        hist['auc_heldout'].append(auc)
        hist['dcor_heldout'].append(dcor)
        print(f'epoch {epoch + 1}: held out: AUC {auc:.4f}, dCor(x, Enc(x)) {dcor:.4f}', flush=True)
        if epoch + 1 < cfg.epochs and dist.is_main():     # under torchrun rank 0 writes
            ckpt.save(out_file, kind='enc', models={'net': net}, cfg=cfg, meta=meta, done=False,
                      train=ckpt.train_state({'opt': opt}, epoch + 1, cfg.epochs, hist,
                                             generators={'gen': gen}))

    # what the defender ends with, on the images the evaluation scores (reported, never tuned on)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    test = loader.load(cfg.data_dir, 'eval_test', device, meta)
    with torch.no_grad():
        f_new, f_old = encode(net.Enc, test, device), encode(net0.Enc, test, device)
        change = ((f_new - f_old).flatten(1).norm(dim=1) / f_old.flatten(1).norm(dim=1)).mean().item()
    res = {'alpha': cfg.alpha, 'protection': protection,
           'auc_heldout_start': auc0, 'dcor_heldout_start': dcor0,
           'auc_heldout': hist['auc_heldout'][-1] if hist['auc_heldout'] else auc0,
           'dcor_heldout': hist['dcor_heldout'][-1] if hist['dcor_heldout'] else dcor0,
           'auc_eval_test': metrics.mean_auc(predict(net.f, f_new), test.attrs.cpu()),
           'auc_eval_test_clean': metrics.mean_auc(predict(net0.f, f_old), test.attrs.cpu()),
           'feature_change': change,
           'history': {k: list(v) for k, v in hist.items() if k != 'start'}}
    if not dist.is_main():
        return res
    ckpt.save(out_file, kind='enc', models={'net': net}, cfg=cfg, meta=meta, metrics=res)
    res['features'] = release.write_encoder_release(cfg, net.Enc, device, meta, protection, cfg.n_queries)
    cfg.save(out_file.with_name(f'{protection}_config.json'))
    short = {k: v for k, v in res.items() if not isinstance(v, dict)}
    clock.finish('nopeek', out_file.with_name(f'{protection}_report.json'), **short)
    return res


if __name__ == '__main__':
    main()
