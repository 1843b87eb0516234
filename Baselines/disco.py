"""DISCO, dynamic channel obfuscation (Singh et al., CVPR 2021, "DISCO: Dynamic and Invariant
Sensitive Channel Obfuscation for deep neural networks"; the authors' Baselines/disco.py).

Starts from the trained target net params/enc.pt (Enc and f). Enc gets a channel pruner appended
(models.ChannelPruner): it scores the 64 channels of each image's feature from the feature itself
and soft-masks them, mask = sigmoid((score - t) / T), t the image's score at the prune_ratio
quantile, T = 1/30 (the authors'), so about prune_ratio of the channels are switched off, and
which ones depends on the image (the "dynamic" part). The released feature is
Enc_alpha(x) = pruner(Enc(x)); the cloud runs its own f_alpha. A proxy decoder Dec (the black-box
attacker's models.Decoder) learns to reconstruct x from the released feature. Per batch, jointly
as the authors:
  Dec             minimises the pixel MSE of x from the pruned feature, detached (only Dec moves);
  Enc and f       minimise the utility BCE(f(Enc_alpha(x)), y) only (the authors train Enc with
                  utility alone: the privacy term does not reach it, Enc's output is detached);
  the pruner      minimises (1 - alpha) * BCE - alpha * rec(x, Dec(pruner(Enc(x)))), i.e. it
                  picks channels f can use and the proxy decoder cannot (Dec frozen for this).
rec is AdvLearn's bounded per-image RMS pixel error (Baselines/advLearning.py). alpha is the knob
(authors 0.4; alpha = 0 only fine-tunes for utility with the pruner in place).

Outputs (protection name disco_alpha<alpha>):
  params/disco_alpha<alpha>.pt      kind 'enc', model 'net' (TargetNet with the pruner in its Enc,
                                    arch prune_ratio) and 'Dec' (the proxy decoder); metrics, history
  <crafted_dir>/<run tag>/disco_alpha<alpha>/features_<split>.pt   Enc_alpha(x) of eval_test,
      eval_train and the public queries (one per identity, the first n_queries), read like any
      protection's features. Attack it like AdvLearn (--enc disco_alpha<alpha>.pt).

    python Baselines/disco.py --preset demo --alpha 0.4
"""
import torch
import torch.nn.functional as F
from tqdm import tqdm

import metrics
from Baselines.advLearning import rec_error, set_trainable
from common import ckpt, config, dist, release, runtime
from common.train import encode, fit, predict
from dataset import loader
from models import Decoder, TargetNet

PROTECTION = dict(prefix='disco_alpha', knob='alpha', label='DISCO (alpha)', style='P-',
                  own_encoder=True, randomised=False, order=60,
                  make='Baselines/disco.py --alpha {value}',
                  # the authors' alpha 0.4 in the pipeline (fixed before any result); `make sweep`
                  # adds a weaker and a stronger privacy weight (demo: its one point)
                  points={'tiny': [1], 'celeba-cpu': [0.4], 'paper': [0.4]},
                  sweep={'demo': [0.4], 'celeba-cpu': [0.2, 0.8]})

# ---- hyperparameters (authors' defaults; override with --name value or --preset NAME) ----
HP = dict(
    alpha=0.4,           # pruner: (1 - alpha) utility - alpha reconstruction (authors: 0.4)
    # authors: 0.99 of a wide LFW feature; of our 64 channels that leaves one, too few for f
    # (the DISCO paper sweeps the ratio): half of them keeps utility and still hides channels
    prune_ratio=0.5,
    epochs=100,          # authors: 100 joint epochs
    batch_size=64,       # authors: 64
    lr=3e-4,             # authors: Adam 3e-4 on Enc, pruner, f and the proxy decoder
    dec_width=64,        # proxy decoder as BlackBoxAttack/trainDecoder.py builds it
    train_split='eval_train',  # the defender's private training images (never eval_test)
    holdout=0.1,         # share of train_split held out for the per-epoch AUC and rec
    flip=True,           # random horizontal flips, as the target net's training
    n_per_id=0,          # eval_test / eval_train images released per identity (0 = all)
    n_queries=256,       # public queries released, one image per identity (Makefile NPUB)
    dec_warmup=0,        # epochs of proxy-decoder training on the start's features first (authors: 0)
    resume=False,
)
# what needs more than "finite and >= 0" (common/config.py): counts, learning rates, fractions
RANGES = dict(alpha='[0,1]', prune_ratio='(0,1)', epochs='>=1', batch_size='>=1', lr='>0',
              dec_width='>=1', holdout='[0,1)')
PRESETS = {
    # tiny: ~40 training images, seconds; a faster lr, and a proxy decoder warmed up first so the
    # 3 epochs have a decoder that inverts something for the pruner to work against
    'tiny': dict(epochs=3, batch_size=8, lr=1e-3, dec_width=8, dec_warmup=20, holdout=0.25,
                 n_queries=16),
    # CPU budgets: demo (~1.6k training images) a few minutes of one thread; celeba-cpu as long
    # as AdvLearn's (10 epochs)
    'demo': dict(epochs=6, dec_width=32, n_queries=64),
    'celeba-cpu': dict(epochs=10, dec_width=32, n_queries=256),
}
# -----------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(net, Dec, split, device):
    """Mean AUC of f, Dec's rec and the share of channels pruned (mask < 0.5) per image, eval mode."""
    feats, auc = release.encoded_auc(net, split, device)
    Dec.eval()
    rec = pruned = 0.0
    for b in loader.batches(len(split), 256):
        b = b.to(device)
        x = split.x(b)
        rec += rec_error(Dec(feats[b]), x).item() * len(b)
        pruned += (net.Enc[-1].mask(net.Enc[:-1](x)) < 0.5).float().mean().item() * len(b)
    return auc, rec / len(split), pruned / len(split)


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, ranges=RANGES, description=__doc__)
    protection = release.name('disco_alpha', cfg.alpha)
    device, clock = runtime.start(cfg, 'disco')
    meta = loader.load_meta(cfg.data_dir)
    src, net0_train, net0, train, held = release.own_encoder_start(cfg, meta, device, 'DISCO')
    # enc.pt's Enc and f, and a fresh pruner at the end of Enc (strict=False: the pruner is new)
    net = TargetNet(src['models']['net']['arch']['n_out'], meta['img_size'], cfg.prune_ratio).to(device)
    missing, unexpected = net.load_state_dict(net0_train.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(f'Enc.{len(net.Enc) - 1}.') for k in missing), missing
    base, pruner = net.Enc[:-1], net.Enc[-1]
    Dec = Decoder(net.feat_shape, meta['img_size'], cfg.dec_width).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    dec_opt = torch.optim.Adam(Dec.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    out_file = ckpt.path(cfg, f'{protection}.pt')
    start, hist = ckpt.resume(cfg, out_file.name, 'enc', meta, {'net': net, 'Dec': Dec},
                              {'opt': opt, 'dec_opt': dec_opt}, generators={'gen': gen})
    hist = hist or {k: [] for k in ('bce_train', 'dec_mse', 'rec_train', 'auc_heldout',
                                    'rec_heldout', 'pruned_heldout')}
    if not start and cfg.dec_warmup:   # the proxy decoder first learns to invert the start's features
        fit(Dec, dec_opt, encode(net.eval().Enc, train, device), train.x(), F.mse_loss, cfg.dec_warmup,
            cfg.batch_size, gen, 'Dec warm-up', hist, key='dec_warmup')
    if 'start' not in hist:    # before any DISCO epoch (kept across --resume)
        hist['start'] = list(evaluate(net, Dec, held, device))
    auc0, rec0, pruned0 = hist['start']
    print(f'{protection}: {len(train)} {cfg.train_split} images ({len(held)} held out: start AUC '
          f'{auc0:.4f}, rec {rec0:.4f}, {pruned0:.0%} of channels pruned)')

    for epoch in range(start, cfg.epochs):
        net.train()
        Dec.train()
        tot = dict(bce=0.0, mse=0.0, rec=0.0)
        n = 0
        bar = tqdm(loader.batches(len(train), cfg.batch_size, True, gen, drop_last=True),
                   total=len(train) // cfg.batch_size, desc=f'DISCO epoch {epoch + 1}/{cfg.epochs}')
        for b in bar:
            b = b.to(device)
            x = loader.augment(train.x(b), gen, flip=cfg.flip)
            z = base(x)
            zp = pruner(z)
            # 1. the proxy adversary, on the detached released feature
            mse = (Dec(zp.detach()) - x).pow(2).mean()
            dec_opt.zero_grad(set_to_none=True)
            mse.backward()
            dec_opt.step()
            # 2. utility for Enc, f and the pruner; the privacy term for the pruner alone
            bce = F.binary_cross_entropy_with_logits(net.f(zp), train.attrs[b])
            set_trainable(Dec, False)
            Dec.eval()      # the decoder as evaluated (running stats), left unchanged by this pass
            rec = rec_error(Dec(pruner(z.detach())), x)     # z detached: Enc gets no privacy grad
            Dec.train()
            opt.zero_grad(set_to_none=True)
            bce.backward()
            for p in pruner.parameters():
                if p.grad is not None:
                    p.grad.mul_(1 - cfg.alpha)
            (-cfg.alpha * rec).backward()         # adds to the pruner's grads only
            opt.step()
            set_trainable(Dec, True)
            n += 1
            for k, v in (('bce', bce), ('mse', mse), ('rec', rec)):
                tot[k] += v.item()
            bar.set_postfix({k: f'{v / n:.4f}' for k, v in tot.items()})
        for k, h in (('bce', 'bce_train'), ('mse', 'dec_mse'), ('rec', 'rec_train')):
            hist[h].append(tot[k] / max(n, 1))
        auc, rec, pruned = evaluate(net, Dec, held, device)
        hist['auc_heldout'].append(auc)
        hist['rec_heldout'].append(rec)
        hist['pruned_heldout'].append(pruned)
        print(f'epoch {epoch + 1}: held out: AUC {auc:.4f}, rec against Dec {rec:.4f}, '
              f'{pruned:.0%} of channels pruned', flush=True)
        if epoch + 1 < cfg.epochs and dist.is_main():     # under torchrun rank 0 writes
            ckpt.save(out_file, kind='enc', models={'net': net, 'Dec': Dec}, cfg=cfg, meta=meta,
                      done=False, train=ckpt.train_state({'opt': opt, 'dec_opt': dec_opt}, epoch + 1,
                                                         cfg.epochs, hist, generators={'gen': gen}))

    # what the defender ends with, on the images the evaluation scores (reported, never tuned on)
    net.eval()
    set_trainable(net, False)
    test = loader.load(cfg.data_dir, 'eval_test', device, meta)
    with torch.no_grad():
        f_new, f_old = encode(net.Enc, test, device), encode(net0.Enc, test, device)
    last = lambda k, v0: hist[k][-1] if hist[k] else v0    # noqa: E731
    res = {'alpha': cfg.alpha, 'prune_ratio': cfg.prune_ratio, 'protection': protection,
           'auc_heldout_start': auc0, 'rec_heldout_start': rec0, 'pruned_heldout_start': pruned0,
           'auc_heldout': last('auc_heldout', auc0), 'rec_heldout': last('rec_heldout', rec0),
           'pruned_heldout': last('pruned_heldout', pruned0),
           'auc_eval_test': metrics.mean_auc(predict(net.f, f_new), test.attrs.cpu()),
           'auc_eval_test_clean': metrics.mean_auc(predict(net0.f, f_old), test.attrs.cpu()),
           'history': {k: list(v) for k, v in hist.items() if k != 'start'}}
    if not dist.is_main():
        return res
    # 'Dec' rides along (load_target builds only 'net'): the proxy decoder DISCO trained against
    ckpt.save(out_file, kind='enc', models={'net': net, 'Dec': Dec}, cfg=cfg, meta=meta, metrics=res)
    res['features'] = release.write_encoder_release(cfg, net.Enc, device, meta, protection, cfg.n_queries)
    cfg.save(out_file.with_name(f'{protection}_config.json'))
    short = {k: v for k, v in res.items() if not isinstance(v, dict)}
    clock.finish('disco', out_file.with_name(f'{protection}_report.json'), **short)
    return res


if __name__ == '__main__':
    main()
