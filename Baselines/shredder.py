"""Step 13: Shredder (Mireshghallah et al., ASPLOS 2020), learned noise released as shredder_lambda<lam>.

Enc and the cloud's f stay the target net's (params/enc.pt, frozen). The edge adds learned noise
    F = Enc(x) + exp(log_scale) * eps,   eps ~ N(0, 1) per image and element,
one learned scale per feature element (models.NoiseScale), started at the std of the clean
features (all elements of the training images), so training starts from noise as large as the
signal. log_scale trains on the defender's private training images (eval_train, a held-out part
for the report) with Enc and f frozen:
    loss = BCE(f(Enc(x) + noise), y) - lam * mean(log_scale).
Shredder maximises the noise magnitude against the accuracy loss. The magnitude term here is the
mean log scale (the log of the geometric mean scale): its pull on every log_scale element is the
constant lam / numel, so the noise grows until f's loss pushes back, evenly in every element;
a raw mean(scale) would pull harder the larger the scale already is and run away. lam is the
knob (0: utility only, the noise shrinks; larger: more noise, less utility).

Released like Baselines/noise.py: each image's eps is seeded by (seed, image name, draw), draw 0
is the published release, a repeated query gets draws 1, 2, ... (`repeat_releases`, the paper's
A3 in evaluate.py). Writes params/shredder_lambda<lam>.pt (kind 'noise'; every split's run with
the same settings reuses it, --resume is on by default for that: --resume false retrains) and
<crafted_dir>/<run tag>/shredder_lambda<lam>/features_<split>.pt (with the learned scale and seed).

    python Baselines/shredder.py --preset demo --lam 1                         # eval_test
    python Baselines/shredder.py --preset demo --lam 1 --split public --n_per_id 1 --n_images 64
"""
import torch
import torch.nn.functional as nnf
from tqdm import tqdm

import metrics
from Baselines.noise import image_generator
from common import ckpt, config, release, runtime
from common.train import encode, predict
from dataset import loader
from models import NoiseScale

PROTECTION = dict(prefix='shredder_lambda', knob='lam', label='Shredder (lambda)', style='X--',
                  own_encoder=False, randomised=True, order=70, trains=True,
                  make='Baselines/shredder.py --lam {value} --split {split}',
                  # fixed before any result: lam 1 weighs a unit of mean log scale like a unit of
                  # BCE; `make sweep` adds a gentler and a stronger point (demo: its one point)
                  points={'tiny': [1], 'celeba-cpu': [1], 'paper': [1]},
                  full={'tiny': [1], 'celeba-cpu': [1], 'paper': [1]},
                  sweep={'demo': [1], 'celeba-cpu': [0.3, 3]})

# ---- hyperparameters (override with --name value or --preset NAME) ----
HP = dict(
    lam=1.0,             # weight of the noise magnitude (mean log scale) against the BCE
    epochs=20,           # passes over the training images (the paper trains to convergence)
    batch_size=64,
    lr=1e-2,             # Adam on log_scale only (Enc and f frozen)
    train_split='eval_train',   # the defender's private training images (never eval_test)
    holdout=0.1,         # share of them held out for the reported AUC
    split='eval_test',   # the release: eval_test | eval_train | public, selected by n_per_id /
    n_per_id=0,          #   n_images as noise.py (not settings of the noise: every split's
    n_images=0,          #   run shares one checkpoint)
    resume=True,         # on: a second split reuses the finished noise, a killed run continues
)
RANGES = dict(epochs='>=1', batch_size='>=1', lr='>0', holdout='(0,1)')
PRESETS = {
    'tiny': dict(epochs=3, batch_size=8, lr=0.05, n_per_id=1, n_images=16, holdout=0.25),
    'demo': dict(epochs=10, n_per_id=1),
    'celeba-cpu': dict(epochs=20, n_per_id=2),
}
RELEASE_KEYS = ('split', 'n_per_id', 'n_images')
# -----------------------------------------------------------------------------------------


def protection_name(lam):
    return release.name(PROTECTION['prefix'], lam)


def release_split(f0, scale, names, seed, draw=0):
    """Draw `draw` of every image (row of f0): f0 + scale * eps (models.NoiseScale's forward),
    each image's eps drawn on the CPU from its own generator (the same on every device)."""
    eps = torch.stack([torch.randn(f.shape, generator=image_generator(seed, n, draw)) for f, n in zip(f0, names)])
    return f0 + scale.to(f0.device) * eps.to(f0.device)


def repeat_releases(obj, f0, names, k):
    """A3: k releases of every image of a published feature file `obj` (k x N x ...; draw 0 is
    the published one, from the recorded scale and seed)."""
    return torch.stack([release_split(f0, obj['scale'], names, int(obj['seed']), d) for d in range(k)])


def train_noise(cfg, meta, net, device, out_file):
    """Learn log_scale on the training images; returns (scale, metrics). Raises ckpt.AlreadyDone
    (before any encoding) when out_file is finished with these settings."""
    noise = NoiseScale(net.feat_shape).to(device)
    opt = torch.optim.Adam(noise.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    start, hist = ckpt.resume(cfg, out_file.name, 'noise', meta, {'noise': noise}, {'opt': opt}, {'data': gen})
    pvt = loader.load(cfg.data_dir, cfg.train_split, device, meta)
    tr, va = loader.holdout(pvt, cfg.holdout, cfg.seed)
    train, held = pvt.subset(tr), pvt.subset(va)
    f_train, f_held = encode(net.Enc, train, device), encode(net.Enc, held, device)
    std = f_train.std().item()      # the clean feature std: the unit of the reported scale

    def report():   # held-out AUC with one draw of the noise, mean scale / std
        scale = noise.log_scale.detach().exp()
        auc = metrics.mean_auc(predict(net.f, release_split(f_held, scale, held.names, cfg.seed)), held.attrs.cpu())
        return auc, scale.mean().item() / std

    if start == 0:
        with torch.no_grad():
            noise.log_scale.fill_(float(torch.tensor(std).log()))
        hist = {'start': list(report()), 'bce': [], 'auc_heldout': [], 'scale_rel': []}
    for epoch in range(start, cfg.epochs):
        total = n = 0
        for b in tqdm(loader.batches(len(train), cfg.batch_size, True, gen, drop_last=True),
                      total=len(train) // cfg.batch_size, desc=f'Shredder epoch {epoch + 1}/{cfg.epochs}'):
            f0 = f_train[b.to(device)]
            eps = torch.randn(f0.shape, generator=gen).to(device)
            bce = nnf.binary_cross_entropy_with_logits(net.f(noise(f0, eps)), train.attrs[b.to(device)])
            loss = bce - cfg.lam * noise.log_scale.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, n = total + bce.item(), n + 1
        auc, rel = report()
        hist['bce'].append(total / max(n, 1))
        hist['auc_heldout'].append(auc)
        hist['scale_rel'].append(rel)
        print(f"epoch {epoch + 1}: BCE {hist['bce'][-1]:.4f}, held-out AUC {auc:.4f}, mean scale {rel:.3f} x std",
              flush=True)
        if epoch + 1 < cfg.epochs:      # a killed run loses one epoch
            ckpt.save(out_file, kind='noise', models={'noise': noise}, cfg=cfg, meta=meta, done=False,
                      train=ckpt.train_state({'opt': opt}, epoch + 1, cfg.epochs, hist, generators={'data': gen}))
    res = {'lam': cfg.lam, 'feature_std': std,
           'auc_heldout_clean': metrics.mean_auc(predict(net.f, f_held), held.attrs.cpu()),
           'auc_heldout_start': hist['start'][0], 'scale_rel_start': hist['start'][1],
           'auc_heldout': hist['auc_heldout'][-1], 'scale_rel': hist['scale_rel'][-1],
           'history': {k: v for k, v in hist.items() if k != 'start'}}
    ckpt.save(out_file, kind='noise', models={'noise': noise}, cfg=cfg, meta=meta, metrics=res)
    return noise.log_scale.detach().exp(), res


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, ranges=RANGES, description=__doc__)
    if cfg.split not in ('eval_test', 'eval_train', 'private', 'public'):
        raise config.ConfigError(f'--split {cfg.split!r}: expected eval_test, eval_train, private or public')
    if cfg.train_split not in ('eval_train', 'public'):
        raise config.ConfigError(f'--train_split {cfg.train_split!r}: expected eval_train or public '
                                 '(eval_test is what the evaluation measures)')
    device, clock = runtime.start(cfg, 'shredder')
    meta = loader.load_meta(cfg.data_dir)
    # the noise's settings leave out what is released, so every split's run shares one checkpoint
    tcfg = config.Config({k: v for k, v in cfg.items() if k not in RELEASE_KEYS})
    net = ckpt.load_target(tcfg, meta, device)
    name = protection_name(cfg.lam)
    out_file = ckpt.path(cfg, f'{name}.pt')
    try:
        scale, res = train_noise(tcfg, meta, net, device, out_file)
    except ckpt.AlreadyDone as done:    # another split of the same settings: reuse the noise
        scale = ckpt.build(done.checkpoint, 'noise', device).log_scale.exp()
        res = dict(done.checkpoint['metrics'])
    split = release.select(loader.load(cfg.data_dir, cfg.split, device, meta), cfg)
    f0 = encode(net.Enc, split, device)
    F = release_split(f0, scale, split.names, cfg.seed)
    out = release.run_dir(cfg, name)
    ckpt.save_features(out / f'features_{cfg.split}.pt', F, split.names, protection=name, split=cfg.split,
                       complete=True, seed=cfg.seed, scale=scale.cpu())
    cfg.save(out / f'config_{cfg.split}.json')
    print(f"{name}: held-out AUC {res['auc_heldout']:.4f} with noise (clean {res['auc_heldout_clean']:.4f}; "
          f"{res['auc_heldout_start']:.4f} at the start), mean scale {res['scale_rel']:.3f} x the clean "
          f"feature std (start {res['scale_rel_start']:.3f}); {len(split)} {cfg.split} images released")
    clock.finish('shredder', n=len(split), **{k: v for k, v in res.items() if not isinstance(v, dict)})
    return {**res, 'protection': name, 'n': len(split), 'out': str(out)}


if __name__ == '__main__':
    main()
