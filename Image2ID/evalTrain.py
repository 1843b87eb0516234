"""Step 3 (and 10 with --split public): train the identity oracle that scores reconstructions (Eval Acc).

An evaluator, not an attacker: it learns the private identities from eval_train images and is
tested here on the clean eval_test images (top-1 / top-5). ResNet trunk of configurable depth
(the paper: 152) with the authors' MLP head (-> 300 -> 200 -> #ids). Saves params/eval.pkl.

    python Image2ID/evalTrain.py --preset demo

Step 10, `--split public --name attacker_id.pkl`: the same network trained by the attacker on
its own public identities (never a private one), tested on one held-out public image per
identity. The adaptive attacks (steps 15, 16) compare its embeddings of a reconstruction and of
the query image to steer and early-stop adaptation on identity rather than on pixels.

    python Image2ID/evalTrain.py --preset demo --split public      # -> params/demo/attacker_id.pkl
"""
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

import metrics
from common import ckpt, config, dist, plots, runtime
from models import Oracle
from dataset import loader

# ---- hyperparameters (paper defaults; override with --name value or --preset NAME) ----
HP = dict(
    depth=152,           # ResNet trunk depth: 18, 34, 50, 101 or 152 (paper: 152)
    stem='imagenet',     # 'imagenet' (7x7 s2 + maxpool) or 'small' (3x3 s1 + maxpool) for 32 px
    epochs=120,          # paper: 120
    public_epochs=20,    # epochs with --split public (6x the images of eval_train; not in the paper)
    batch_size=64,       # paper: 64
    lr=1e-3,             # Adam (paper: 1e-3, weight decay 1e-4)
    weight_decay=1e-4,
    flip=True,           # augmentation: random flips, shifts (pixels), zoom (+-), rotation
    shift=2,             # (degrees) and brightness (+-): identity must survive pose and light
    scale=0.0,
    rotate=0.0,
    brightness=0.0,
    label_smoothing=0.0,
    resume=False,
    split='eval_train',  # eval_train: the oracle | public: the attacker's own identity model
    name='',             # checkpoint file ('' = eval.pkl, or attacker_id.pkl with --split public)
)
# what needs more than "finite and >= 0" (common/config.py): counts, learning rates, fractions
RANGES = dict(depth=[18, 34, 50, 101, 152], epochs='>=1', public_epochs='>=1', batch_size='>=1',
              lr='>0', label_smoothing='[0,1)')
PRESETS = {
    'tiny': dict(depth=18, epochs=2, public_epochs=2, batch_size=32),
    'demo': dict(depth=18, stem='small', epochs=12, public_epochs=4),
    'celeba-cpu': dict(depth=18, stem='small', epochs=30, public_epochs=15),
}
# -----------------------------------------------------------------------------------------


def load_oracle(cfg, meta, device, name='eval'):
    """The trained oracle of this run's data (used by every stage that scores identity):
    'eval' (params/eval.pkl, this script) or 'facenet' (params/facenet.pkl, facenetTrain.py)."""
    ck = ckpt.load(cfg, f'{name}.pkl', 'oracle', meta)
    return ckpt.build(ck, 'oracle', device)


EVALUATORS = ('eval', 'facenet', 'dlib')


def evaluator_names(spec):
    """The evaluators of a comma list; 'auto' = the trained oracle, plus dlib where installed."""
    if spec == 'auto':
        from Image2ID import dlibEval
        return ['eval'] + (['dlib'] if dlibEval.available() else [])
    names = [n.strip() for n in spec.split(',') if n.strip()]
    bad = [n for n in names if n not in EVALUATORS]
    if bad or not names:
        raise config.ConfigError(f'--oracle {spec!r}: expected auto or a comma list of {",".join(EVALUATORS)}')
    return names


def load_evaluators(cfg, meta, device, train, test):
    """The identity evaluators of cfg.oracle (evaluator_names), each fitted on the eval_train
    images `train` (loader.Split): {name: {'oracle', 'train': (embeddings, labels) for the KNN
    distance, 'emb_test' and 'clean_top1' of the clean `test` images (the evaluator's ceiling)}}.
    'eval' / 'facenet': a trained oracle (load_oracle); 'dlib': the pretrained descriptor
    (Image2ID/dlibEval.py, on the CPU), with its faces-found counts."""
    out = {}
    for name in evaluator_names(cfg.oracle):
        if name == 'dlib':
            from Image2ID import dlibEval
            if not dlibEval.available():
                raise config.UserError(f'--oracle dlib needs dlib and its models: .venv/bin/{dlibEval.INSTALL}')
            oracle = dlibEval.build(cfg, meta, 'cpu', train=train)
            ev = {'oracle': oracle, 'train': (oracle.train_emb, oracle.train_labels), 'faces_found': oracle.train_stats}
        else:
            oracle = load_oracle(cfg, meta, device, name)
            ev = {'oracle': oracle, 'train': (metrics.oracle_outputs(oracle, train.x())[1], train.labels.cpu())}
        logits, ev['emb_test'] = metrics.oracle_outputs(oracle, test.x().cpu())
        ev['clean_top1'] = metrics.topk_accuracy(logits, test.labels.cpu(), (1,))[1]
        if name == 'dlib':
            ev['faces_found_test'] = dict(oracle.stats)
        out[name] = ev
    return out


def score(evaluators, out, test):
    """Reconstructions of the `test` images (restarts x N x 3 x S x S, every restart scored) by
    every evaluator: the attack's top-1 is the strongest evaluator's (the worst case over
    evaluators); pixel scores and the first evaluator's similarity sit at the top level, each
    evaluator's top-1 / top-5 / KNN distance (dlib: and images with no face found) under by_evaluator."""
    r, by = out.shape[0], {}
    for n, ev in evaluators.items():
        o, before = ev['oracle'], dict(getattr(ev['oracle'], 'stats', {}))
        s = metrics.reconstruction_scores(o, out.flatten(0, 1), test.x().cpu().repeat(r, 1, 1, 1),
                                          test.labels.cpu().repeat(r), ev['train'], ev['emb_test'].repeat(r, 1))
        by[n] = {k: s.pop(k) for k in ('eval_acc', 'eval_acc_top5', 'knn_distance', 'feature_sim')}
        if before:
            by[n]['no_face'] = o.stats['fallback'] - before['fallback']
    name, best = metrics.strongest_evaluator(by)
    first = by[next(iter(by))]
    return {**s, 'eval_acc': best['eval_acc'], 'eval_acc_top5': best['eval_acc_top5'], 'evaluator': name,
            'feature_sim': first['feature_sim'], 'knn_distance': first['knn_distance'], 'by_evaluator': by}


def public_split(pub, seed):
    """(train, test) of the public images: one held-out image per identity that has two or more
    (the attacker's identity model is tested on faces it did not train on)."""
    labels = pub.labels.cpu()
    counts = torch.bincount(labels, minlength=int(labels.max()) + 1)
    held = loader.per_identity(pub, 1, seed)
    held = held[counts[labels[held]] >= 2]
    keep = torch.ones(len(pub), dtype=torch.bool)
    keep[held] = False
    return pub.subset(torch.nonzero(keep).flatten()), pub.subset(held)


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, ranges=RANGES, description=__doc__)
    if cfg.split not in ('eval_train', 'public'):
        raise config.ConfigError(f"--split {cfg.split!r}: expected 'eval_train' (the oracle) or "
                                 f"'public' (the attacker's identity model)")
    cfg.name = cfg.name or ('eval.pkl' if cfg.split == 'eval_train' else 'attacker_id.pkl')
    if cfg.split == 'public' and cfg.name == 'eval.pkl':     # would replace the oracle
        raise config.ConfigError("--split public --name eval.pkl: eval.pkl is the oracle; the "
                                 "attacker's identity model goes to --name attacker_id.pkl")
    device, clock = runtime.start(cfg, 'evalTrain')
    meta = loader.load_meta(cfg.data_dir)
    if cfg.split == 'public':
        train, test = public_split(loader.load(cfg.data_dir, 'public', device, meta), cfg.seed)
    else:
        train = loader.load(cfg.data_dir, 'eval_train', device, meta)
        test = loader.load(cfg.data_dir, 'eval_test', device, meta)
    stem = Path(cfg.name).stem
    epochs = cfg.epochs if cfg.split == 'eval_train' else cfg.public_epochs
    test_label = 'eval_test' if cfg.split == 'eval_train' else 'held-out public'

    net = Oracle(train.n_ids, meta['img_size'], cfg.depth, cfg.stem).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    gen = torch.Generator().manual_seed(cfg.seed)      # saved and restored with --resume
    start, hist = ckpt.resume(cfg, cfg.name, 'oracle', meta, {'oracle': net},
                              {'opt': opt, 'sched': sched}, generators={'data': gen})
    hist = hist or {'loss': [], 'test_top1': []}
    model = dist.wrap(net, device)   # DDP under torchrun
    out_file = ckpt.path(cfg, cfg.name)

    def test_acc():
        dist.sync(net)              # rank 0's BatchNorm statistics on every rank
        net.eval()
        logits, _ = metrics.oracle_outputs(net, test.x())
        return metrics.topk_accuracy(logits, test.labels.cpu(), (1, 5))

    for epoch in range(start, epochs):
        net.train()
        total, n = 0.0, 0
        bar = tqdm(loader.batches(len(train), cfg.batch_size, True, gen, drop_last=True),
                   total=len(train) // cfg.batch_size, desc=f'epoch {epoch + 1}/{epochs}',
                   disable=not dist.is_main())
        for b in bar:
            b = b.to(device)
            x = loader.augment(train.x(b), gen, cfg.flip, cfg.shift, cfg.scale, cfg.rotate,
                               cfg.brightness)
            if dist.world() > 1:    # this rank's share of the global batch, augmented whole
                mine = dist.local(torch.arange(len(b), device=device))
                x, b = x[mine], b[mine]
            loss = F.cross_entropy(model(x), train.labels[b], label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, n = total + loss.item(), n + 1
            bar.set_postfix(loss=f'{total / n:.3f}')
        sched.step()
        hist['loss'].append(dist.mean(total / max(n, 1)))
        hist['test_top1'].append(test_acc()[1])
        print(f'epoch {epoch + 1}: loss {hist["loss"][-1]:.3f}  {test_label} top-1 {hist["test_top1"][-1]:.3f}')
        if dist.is_main():          # under torchrun rank 0 writes, the others wait
            ckpt.save(out_file, kind='oracle', models={'oracle': net}, cfg=cfg, meta=meta,
                      train=ckpt.train_state({'opt': opt, 'sched': sched}, epoch + 1, epochs,
                                             hist, generators={'data': gen}),
                      done=False)
        dist.barrier()

    acc = test_acc()
    res = {'top1': acc[1], 'top5': acc[5], 'n_ids': train.n_ids, 'chance': 1 / train.n_ids,
           'n_test': len(test), 'split': cfg.split}
    if dist.is_main():              # under torchrun rank 0 writes, the others wait
        ckpt.save(out_file, kind='oracle', models={'oracle': net}, cfg=cfg, meta=meta, metrics=res)
        title = 'identity oracle' if cfg.split == 'eval_train' else "attacker's identity model"
        plots.save_curves({'train loss': hist['loss'], f'{test_label} top-1': hist['test_top1']},
                          out_file.with_name(f'{stem}_curves.png'), title, xlabel='epoch')
        cfg.save(out_file.with_name(f'{stem}_config.json'))
    dist.barrier()
    clock.finish('evalTrain', out_file.with_name(f'{stem}_report.json'), **res)
    return res


if __name__ == '__main__':
    main()
