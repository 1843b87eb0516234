"""Step 13: AdvLearn, the adversarial-learning baseline (the authors' Baselines/advLearning.py).

Starts from the trained target net params/enc.pt (Enc and f). Every epoch:
  1. the adversary's decoder Dec (the black-box attacker's Decoder) trains one round on public
     images, minimising its reconstruction error with Enc and f frozen;
  2. Dec frozen, Enc and f train together on the defender's private training images to minimise
         (1 - lam) * BCE(f(Enc(x)), y)  -  lam * rec(x, Dec(Enc(x))).
The released feature is Enc_lam(x) and the cloud runs its own f_lam. lam is the trade-off knob
(the paper sweeps it; lam = 0 only fine-tunes for utility).

rec, the reconstruction term: the paper writes ||x - Dec(Enc(x))||_2 / (H W) over the batch
tensor, whose scale grows with the batch size. Here it is the per-image root-mean-square pixel
error, averaged over the batch: the same norm per image, divided by sqrt(3 H W) instead of
H W. Images are in [0, 1] and Dec ends in a sigmoid, so rec lies in [0, 1]: the reward the
encoder gets for defeating its decoder is bounded and cannot swamp the utility term, whatever
Enc does to its features. With --rec_cap the reward stops at the error of a decoder that knows
nothing (always the mean public image), so Enc is not paid for *anti*-reconstruction (Dec
pushed to the colour negative, which keeps the information); off by default (the paper's form).
While Enc trains, Dec's batch norm uses batch statistics (as in the authors' code) but its
running averages are left untouched, so the adversary's state is exactly what its step 1 made.

Outputs (protection name advlearn_lambda<lam>):
  params/advlearn_lambda<lam>.pt                      kind 'enc', model 'net' (Enc_lam and f_lam, the
                                                      arch of enc.pt) and model 'Dec' (the decoder
                                                      it trained against); metrics, per-epoch history
  <crafted_dir>/<run tag>/advlearn_lambda<lam>/features_<split>.pt   Enc_lam(x) of eval_test,
      eval_train and the public queries (one image per identity, the first n_queries), for
      evaluate.py and the adaptive attacks, read like any protection's features.
With --attacks true it then trains what the attacks on Enc_lam need (else run them yourself):
  python WhiteBoxAttack/trainAmor.py --preset demo --enc advlearn_lambda<lam>.pt --name amor_advlearn_lambda<lam>.pt
  python BlackBoxAttack/trainDecoder.py --preset demo --enc advlearn_lambda<lam>.pt --name dec_adaptive_advlearn_lambda<lam>.pkl

    python Baselines/advLearning.py --preset demo --lam 0.5
"""
import contextlib

import torch
import torch.nn.functional as F
from tqdm import tqdm

import metrics
from common import ckpt, config, dist, plots, release, runtime
from common.train import encode, predict
from models import Decoder
from dataset import loader

PROTECTION = dict(prefix='advlearn_lambda', knob='lam', label='AdvLearn (lambda)', style='^-.',
                  own_encoder=True, randomised=False, order=40,
                  points={'tiny': [0.9], 'demo': [0.9], 'celeba-cpu': [0.5, 0.9, 0.97], 'paper': [0.9]},
                  make='Baselines/advLearning.py --lam {value}')

# ---- hyperparameters (paper defaults; override with --name value or --preset NAME) ----
HP = dict(
    lam=0.5,             # trade-off: (1 - lam) utility - lam reconstruction (paper sweeps it)
    epochs=500,          # paper / authors' code: 500 alternating epochs
    batch_size=32,       # paper: 32 for Dec and for (Enc, f)
    lr=1e-3,             # Adam defaults on Enc and f (authors' code: optim.Adam())
    dec_lr=1e-3,         # Adam defaults on Dec
    dec_width=64,        # Dec as BlackBoxAttack/trainDecoder.py builds it (paper width 64)
    dec_images=0,        # public images per Dec round, a fresh random draw each epoch (0 = all)
    train_split='eval_train',  # the defender's private training images (never eval_test)
    holdout=0.1,         # share of train_split held out for the per-epoch AUC and rec
    flip=True,           # random horizontal flips for (Enc, f), as the target net's training
    rec_cap=False,       # cap rec at the mean-public-image error (no reward for anti-reconstruction)
    n_per_id=0,          # eval_test / eval_train images released per identity (0 = all)
    n_queries=256,       # public queries released, one image per identity (Makefile NPUB)
    attacks=False,       # afterwards train amor_<p>.pt and dec_adaptive_<p>.pkl for Enc_lam
    resume=False,
)
# what needs more than "finite and >= 0" (common/config.py): counts, learning rates, fractions
RANGES = dict(lam='[0,1]', epochs='>=1', batch_size='>=1', lr='>0', dec_lr='>0', dec_width='>=1',
              holdout='[0,1)')
PRESETS = {
    'tiny': dict(epochs=3, batch_size=8, dec_width=8, n_queries=16),
    # CPU budgets: one lam point in a few minutes of one thread (demo), each point of the
    # celeba-cpu sweep in ~10 minutes; Dec sees a fresh random draw of public images per epoch
    'demo': dict(epochs=8, dec_width=32, dec_images=2048, n_queries=64),
    'celeba-cpu': dict(epochs=10, dec_width=32, dec_images=2048, n_queries=256),
}
# -----------------------------------------------------------------------------------------


def protection_name(lam):
    return f'advlearn_lambda{lam:g}'


def rec_error(recon, x):
    """Per-image RMS pixel error, batch mean: ||x - x_hat||_2 / sqrt(3 H W), in [0, 1]."""
    return (recon - x).pow(2).flatten(1).mean(1).sqrt().mean()


@contextlib.contextmanager
def frozen_batchnorm_stats(model):
    """Batch norm keeps using batch statistics but leaves its running averages unchanged."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom


def set_trainable(model, flag):
    for p in model.parameters():
        p.requires_grad_(flag)


@torch.no_grad()
def evaluate(net, Dec, split, device):
    """Mean AUC of f_lam on Enc_lam features and Dec's rec against Enc_lam (eval mode)."""
    feats, auc = release.encoded_auc(net, split, device)
    Dec.eval()
    rec = sum(rec_error(Dec(feats[b.to(device)]), split.x(b.to(device))).item() * len(b)
              for b in loader.batches(len(split), 256)) / len(split)
    return auc, rec


def run_attacks(cfg, protection):
    """The white-box amortizer and the adaptive black-box decoder for Enc_lam, by the stages'
    own scripts (their presets apply; data and checkpoint locations are passed on)."""
    from BlackBoxAttack import trainDecoder
    from WhiteBoxAttack import trainAmor
    common = []
    if cfg.preset:
        common += ['--preset', cfg.preset]
    for k in ('data_dir', 'params_dir', 'results_dir', 'crafted_dir', 'device', 'seed'):
        common += [f'--{k}', str(cfg[k])]
    trainAmor.main(common + ['--enc', f'{protection}.pt', '--name', f'amor_{protection}.pt'])
    trainDecoder.main(common + ['--enc', f'{protection}.pt',
                                '--name', f'dec_adaptive_{protection}.pkl'])


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, ranges=RANGES, description=__doc__)
    if not 0.0 <= cfg.lam <= 1.0:
        raise config.ConfigError(f'--lam {cfg.lam}: expected a number in [0, 1]')
    protection = protection_name(cfg.lam)
    device, clock = runtime.start(cfg, 'advLearning')
    meta = loader.load_meta(cfg.data_dir)
    src, net, net0, train, held = release.own_encoder_start(cfg, meta, device, 'AdvLearn')
    pub = loader.load(cfg.data_dir, 'public', device, meta)
    Dec = Decoder(net.feat_shape, meta['img_size'], cfg.dec_width).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    dec_opt = torch.optim.Adam(Dec.parameters(), lr=cfg.dec_lr)
    out_file = ckpt.path(cfg, f'{protection}.pt')
    start, hist = ckpt.resume(cfg, out_file.name, 'enc', meta, {'net': net},
                              {'opt': opt, 'dec_opt': dec_opt})
    if start:
        Dec.load_state_dict(hist.pop('dec_state'))
    hist = hist or {k: [] for k in ('dec_mse', 'rec_train', 'bce_train', 'auc_heldout',
                                    'rec_heldout')}
    gen = torch.Generator().manual_seed(cfg.seed)
    if start:   # continue the same data order
        gen.set_state(hist.pop('gen_state'))
    with torch.no_grad():   # "knows nothing": always answer the mean public image
        mean_img = pub.x().mean(0, keepdim=True)
        cap = rec_error(mean_img.expand(len(held), -1, -1, -1), held.x()).item()
    if 'start' not in hist:    # before any AdvLearn epoch (kept across --resume)
        hist['start'] = list(evaluate(net, Dec, held, device))
    auc0, rec0 = hist['start']
    print(f'{protection}: {len(train)} {cfg.train_split} images for (Enc, f) ({len(held)} held '
          f'out, start AUC {auc0:.4f}), Dec on {cfg.dec_images or len(pub)} public images per '
          f'epoch; mean-image error {cap:.4f}')

    for epoch in range(start, cfg.epochs):
        # 1. the adversary: Dec on public (Enc(x), x) pairs, Enc and f frozen
        net.eval()
        set_trainable(net, False)
        Dec.train()
        n_pub = min(cfg.dec_images or len(pub), len(pub))
        idx = torch.randperm(len(pub), generator=gen)[:n_pub].to(device)
        sub = pub.subset(idx.cpu())
        feats = encode(net.Enc, sub, device)
        total = n = 0
        bar = tqdm(loader.batches(len(sub), cfg.batch_size, True, gen, drop_last=True),
                   total=len(sub) // cfg.batch_size, desc=f'Dec epoch {epoch + 1}/{cfg.epochs}')
        for b in bar:
            b = b.to(device)
            loss = (Dec(feats[b]) - sub.x(b)).pow(2).mean()     # as trainDecoder's image_mse
            dec_opt.zero_grad(set_to_none=True)
            loss.backward()
            dec_opt.step()
            total, n = total + loss.item(), n + 1
            bar.set_postfix(mse=f'{total / n:.4f}')
        hist['dec_mse'].append(total / max(n, 1))

        # 2. the defender: Enc and f on private images against the frozen Dec
        set_trainable(net, True)
        set_trainable(Dec, False)
        net.train()
        Dec.train()
        tot_rec = tot_bce = n = 0
        bar = tqdm(loader.batches(len(train), cfg.batch_size, True, gen, drop_last=True),
                   total=len(train) // cfg.batch_size, desc=f'Enc, f epoch {epoch + 1}/{cfg.epochs}')
        with frozen_batchnorm_stats(Dec):
            for b in bar:
                b = b.to(device)
                x = loader.augment(train.x(b), gen, flip=cfg.flip)
                z = net.Enc(x)
                bce = F.binary_cross_entropy_with_logits(net.f(z), train.attrs[b])
                rec = rec_error(Dec(z), x)
                reward = torch.clamp(rec, max=cap) if cfg.rec_cap else rec
                loss = (1 - cfg.lam) * bce - cfg.lam * reward
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot_rec, tot_bce, n = tot_rec + rec.item(), tot_bce + bce.item(), n + 1
                bar.set_postfix(bce=f'{tot_bce / n:.4f}', rec=f'{tot_rec / n:.4f}')
        set_trainable(Dec, True)
        hist['rec_train'].append(tot_rec / max(n, 1))
        hist['bce_train'].append(tot_bce / max(n, 1))
        auc, rec = evaluate(net, Dec, held, device)
        hist['auc_heldout'].append(auc)
        hist['rec_heldout'].append(rec)
        print(f"epoch {epoch + 1}: Dec mse {hist['dec_mse'][-1]:.4f}; held out: AUC {auc:.4f}, "
              f"rec against Dec {rec:.4f}", flush=True)
        if epoch + 1 < cfg.epochs and dist.is_main():     # under torchrun rank 0 writes
            ckpt.save(out_file, kind='enc', models={'net': net}, cfg=cfg, meta=meta, done=False,
                      train=ckpt.train_state({'opt': opt, 'dec_opt': dec_opt}, epoch + 1,
                                             cfg.epochs, {**hist, 'dec_state': Dec.state_dict(),
                                                          'gen_state': gen.get_state()}))
        dist.barrier()

    # what the defender ends with, on the images the evaluation scores (reported, never tuned on)
    net.eval()
    set_trainable(net, False)
    test = loader.load(cfg.data_dir, 'eval_test', device, meta)
    with torch.no_grad():
        f_new, f_old = encode(net.Enc, test, device), encode(net0.Enc, test, device)
        change = ((f_new - f_old).flatten(1).norm(dim=1) / f_old.flatten(1).norm(dim=1)).mean().item()
    res = {'lam': cfg.lam, 'protection': protection,
           'auc_heldout_start': auc0, 'rec_heldout_start': rec0,
           'auc_heldout': hist['auc_heldout'][-1] if hist['auc_heldout'] else auc0,
           'rec_heldout': hist['rec_heldout'][-1] if hist['rec_heldout'] else rec0,
           'rec_mean_image': cap,
           'auc_eval_test': metrics.mean_auc(predict(net.f, f_new), test.attrs.cpu()),
           'auc_eval_test_clean': metrics.mean_auc(predict(net0.f, f_old), test.attrs.cpu()),
           'feature_change': change,
           'history': {k: list(v) for k, v in hist.items() if k != 'start'}}
    # 'Dec' rides along (load_target builds only 'net'): the decoder AdvLearn trained against
    if not dist.is_main():      # under torchrun rank 0 writes and attacks, the others wait
        dist.barrier()
        return res
    ckpt.save(out_file, kind='enc', models={'net': net, 'Dec': Dec}, cfg=cfg, meta=meta, metrics=res)
    res['features'] = release.write_encoder_release(cfg, net.Enc, device, meta, protection, cfg.n_queries)
    plots.save_curves({'Dec MSE (public)': hist['dec_mse'], 'rec vs Dec (held out)': hist['rec_heldout'],
                       'AUC (held out)': hist['auc_heldout']},
                      out_file.with_name(f'{protection}_curves.png'), f'AdvLearn lambda={cfg.lam:g}',
                      xlabel='epoch')
    cfg.save(out_file.with_name(f'{protection}_config.json'))
    dist.barrier()
    short = {k: v for k, v in res.items() if not isinstance(v, dict)}
    clock.finish('advLearning', out_file.with_name(f'{protection}_report.json'), **short)
    if cfg.attacks:
        run_attacks(cfg, protection)
    return res


if __name__ == '__main__':
    main()
