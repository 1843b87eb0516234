"""Step 7: the black-box attack's decoder Dec: feature -> image, trained on public pairs.

The attacker queries the edge model with its own public faces and learns to invert the
features: L2 between Dec(Enc(x)) and x (Adam defaults; the paper trains 500 epochs). At the end
it decodes the raw features of eval_test images and scores them with the oracle (when step 3
has been run). Saves params/dec.pkl.

    python BlackBoxAttack/trainDecoder.py --preset demo
"""

import torch

import metrics
from common import ckpt, config, dist, io, plots, runtime
from common.train import encode, fit
from models import Decoder
from dataset import loader

# ---- hyperparameters (paper defaults; override with --name value or --preset NAME) ----
HP = dict(
    width=64,            # 512 -> 256 -> 128 -> 64 -> 3 at 64 px (paper)
    epochs=500,          # paper: 500
    batch_size=64,
    lr=1e-3,             # Adam defaults
    n_per_id=0,          # eval_test images per identity for the final score (0 = all)
    resume=False,
    enc='enc.pt',        # the target net whose features it learns to invert (a protection's
                         # own, e.g. advlearn_lambda<l>.pt for AdvLearn)
    name='dec.pkl',      # output checkpoint; curves, config and report files take its stem
)
# what needs more than "finite and >= 0" (common/config.py): counts, learning rates, fractions
RANGES = dict(width='>=1', epochs='>=1', batch_size='>=1', lr='>0')
PRESETS = {
    'tiny': dict(width=8, epochs=1, batch_size=32, n_per_id=2),
    'demo': dict(width=32, epochs=3, batch_size=64, n_per_id=1),
    'celeba-cpu': dict(width=32, epochs=12, batch_size=64, n_per_id=2),
}
# -----------------------------------------------------------------------------------------


def image_mse(recon, images):
    """Dec's L2 loss against uint8 images."""
    return (recon - images.float().div(255)).pow(2).mean()


def score_raw(cfg, meta, Enc, Dec, device, out_dir):
    """Black-box attack on raw eval_test features, scored by the oracle if it exists."""
    test = loader.load(cfg.data_dir, 'eval_test', device, meta)
    test = test.subset(loader.per_identity(test, cfg.n_per_id, cfg.seed))
    with torch.no_grad():
        recon = Dec(encode(Enc, test, device)).cpu()
    plots.save_rows([test.x()[:16].cpu(), recon[:16]], out_dir / 'grid_blackbox.png')
    if ckpt.load(cfg, 'eval.pkl', 'oracle', meta, required=False) is None:
        print('note: no oracle yet (step 3), black-box reconstructions are not scored')
        return {}
    from Image2ID.evalTrain import load_oracle
    scores = metrics.reconstruction_scores(load_oracle(cfg, meta, device), recon, test.x().cpu(),
                                           test.labels.cpu())
    scores['chance'] = 1 / test.n_ids
    print('black-box on raw eval_test features: ' + ', '.join(f'{k}={v:.4g}' for k, v in scores.items()))
    return scores


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, ranges=RANGES, description=__doc__)
    device, clock = runtime.start(cfg, 'trainDecoder')
    meta = loader.load_meta(cfg.data_dir)
    target = ckpt.load_target(cfg, meta, device, cfg.enc)
    pub = loader.load(cfg.data_dir, 'public', device, meta)
    feats = encode(target.Enc, pub, device, out='cpu')   # on the CPU; fit moves batches
    Dec = Decoder(target.feat_shape, meta['img_size'], cfg.width).to(device)
    opt = torch.optim.Adam(Dec.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)      # saved and restored with --resume
    start, hist = ckpt.resume(cfg, cfg.name, 'dec', meta, {'Dec': Dec}, {'opt': opt},
                              generators={'data': gen})
    out_file = ckpt.path(cfg, cfg.name)
    stem = out_file.stem

    def periodic(epoch):
        if epoch < cfg.epochs:
            ckpt.save(out_file, kind='dec', models={'Dec': Dec}, cfg=cfg, meta=meta, done=False,
                      train=ckpt.train_state({'opt': opt}, epoch, cfg.epochs, hist,
                                             generators={'data': gen}))

    fit(Dec, opt, feats, pub.images, image_mse, cfg.epochs, cfg.batch_size, gen, 'Dec', hist, 'mse',
        start, periodic)
    sub = 'attack_raw' if cfg.name == HP['name'] else f'attack_raw_{stem}'   # another decoder's grid
    out_dir = io.repo_path(cfg.results_dir) / runtime.run_tag(cfg) / sub
    res = score_raw(cfg, meta, target.Enc, Dec, device, out_dir)
    if dist.is_main():          # under torchrun rank 0 writes, the others wait
        ckpt.save(out_file, kind='dec', models={'Dec': Dec}, cfg=cfg, meta=meta,
                  metrics={'train_mse': hist['mse'][-1] if hist.get('mse') else None, **res})
        plots.save_curves({'train MSE': hist['mse']}, out_file.with_name(f'{stem}_loss.png'),
                          'decoder', xlabel='epoch')
        cfg.save(out_file.with_name(f'{stem}_config.json'))
    dist.barrier()
    clock.finish('trainDecoder', out_file.with_name(f'{stem}_report.json'),
                 train_mse=hist['mse'][-1] if hist.get('mse') else None,
                 **{f'blackbox_{k}': v for k, v in res.items()})
    return res


if __name__ == '__main__':
    main()
