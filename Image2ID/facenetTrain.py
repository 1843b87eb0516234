"""Step 3 (optional): the FaceNet identity oracle, as the paper uses on LFW.

facenet-pytorch's InceptionResnetV1 with VGGFace2 weights from a local file (`--weights PATH`;
nothing is downloaded: fetch `20180402-114759-vggface2.pt` from facenet-pytorch's releases on a
machine with internet). The embedding network is frozen; its logits layer is retrained on
eval_train (the paper: a 38-way layer on LFW). Reports top-1 / top-5 on clean eval_test images.
Saves params/facenet.pkl; evaluate.py --oracle facenet scores reconstructions with it.
facenet-pytorch is an optional extra: .venv/bin/pip install --no-deps -r requirements-facenet.txt

    python Image2ID/facenetTrain.py --preset demo --weights 20180402-114759-vggface2.pt
"""
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

import metrics
from common import ckpt, config, io, runtime
from models import FaceNetOracle
from dataset import loader

# ---- hyperparameters (paper defaults; override with --name value or --preset NAME) ----
HP = dict(
    weights='',          # VGGFace2 state dict of InceptionResnetV1 (required)
    epochs=30,           # logits-layer epochs on cached embeddings
    batch_size=64,
    lr=1e-3,
)
# what needs more than "finite and >= 0" (common/config.py): counts, learning rates, fractions
RANGES = dict(epochs='>=1', batch_size='>=1', lr='>0')
PRESETS = {'tiny': dict(epochs=2, batch_size=16)}
# -----------------------------------------------------------------------------------------


@torch.no_grad()
def embed_all(net, split, device, batch_size=64):
    """The frozen FaceNet embedding of every image, computed once."""
    return torch.cat([net.embed(split.x(b.to(device))) for b in
                      tqdm(list(loader.batches(len(split), batch_size)), desc=f'FaceNet {split.name}')])


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, ranges=RANGES, description=__doc__)
    if not cfg.weights:
        raise config.ConfigError('--weights PATH is required: the VGGFace2 InceptionResnetV1 state '
                                 'dict (20180402-114759-vggface2.pt from facenet-pytorch releases)')
    weights = Path(cfg.weights).expanduser()
    if not weights.exists():
        raise SystemExit(f'error: FaceNet weight file {weights} not found. Nothing is downloaded '
                         'here: fetch 20180402-114759-vggface2.pt from the facenet-pytorch '
                         'releases on a machine with internet and pass its path with --weights')
    device, clock = runtime.start(cfg, 'facenetTrain')
    meta = loader.load_meta(cfg.data_dir)
    train = loader.load(cfg.data_dir, 'eval_train', device, meta)
    test = loader.load(cfg.data_dir, 'eval_test', device, meta)
    net = FaceNetOracle(train.n_ids, meta['img_size'])
    try:
        state = torch.load(weights, map_location='cpu', weights_only=True)
    except Exception as e:
        raise SystemExit(f'error: {weights} is not a readable state dict ({type(e).__name__}: {e})') from None
    state = {k: v for k, v in state.items() if not k.startswith('logits.')}   # VGGFace2's 8631 ids
    missing, unexpected = net.net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SystemExit(f'error: {weights} does not fit InceptionResnetV1: missing '
                         f'{missing[:3]}, unexpected {unexpected[:3]}')
    net.to(device).eval()
    for p in net.net.parameters():
        p.requires_grad_(False)
    e_train, e_test = embed_all(net, train, device), embed_all(net, test, device)
    opt = torch.optim.Adam(net.logits.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    for _ in tqdm(range(cfg.epochs), desc='logits layer'):
        for b in loader.batches(len(e_train), cfg.batch_size, True, gen):
            b = b.to(device)
            loss = F.cross_entropy(net.logits(e_train[b]), train.labels[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        acc = metrics.topk_accuracy(net.logits(e_test).cpu(), test.labels.cpu(), (1, 5))
    res = {'top1': acc[1], 'top5': acc[5], 'n_ids': train.n_ids, 'chance': 1 / train.n_ids,
           'weights': str(weights)}
    out_file = ckpt.path(cfg, 'facenet.pkl')
    ckpt.save(out_file, kind='oracle', models={'oracle': net}, cfg=cfg, meta=meta, metrics=res)
    clock.finish('facenetTrain', **res, saved=io.rel(out_file))
    return res


if __name__ == '__main__':
    main()
