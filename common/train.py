"""The small training helpers every stage shares: features of a split, batched prediction, and
the one mini-batch loop over fixed (input, target) tensors (Dec, Feature2ID, the cloud model of
the training scenario, the adaptive decoder)."""
import torch
from tqdm import tqdm

from common import dist
from dataset import loader


@torch.no_grad()
def encode(Enc, split, device, batch_size=256, out=None):
    """Enc features of a whole split, computed once (training reuses them every epoch).

    Chunks of `batch_size` images go through Enc on `device`; the features are written into one
    preallocated tensor on `out` (default `device`; 'cpu' keeps a large split off the GPU, and
    fit / predict move one batch at a time), so the peak is one copy, not the chunks plus their
    concatenation.
    """
    out = torch.device(out) if out is not None else torch.device(device)
    feats, i = None, 0
    for b in loader.batches(len(split), batch_size):
        f = Enc(split.x(b.to(device)))
        if feats is None:
            feats = torch.empty((len(split), *f.shape[1:]), dtype=f.dtype, device=out)
        feats[i:i + len(b)] = f
        i += len(b)
    return feats


@torch.no_grad()
def predict(net, feats, batch_size=256):
    net.eval()
    device = next(net.parameters()).device
    return torch.cat([net(feats[i:i + batch_size].to(device))
                      for i in range(0, len(feats), batch_size)]).cpu()


def fit(net, opt, inputs, targets, loss_fn, epochs, batch_size, gen, desc, hist, key='loss',
        start=0, on_epoch=None):
    """Epochs `start`..`epochs` of shuffled mini-batches; appends the epoch mean to hist[key].

    on_epoch(epoch) runs after each epoch (periodic checkpoints), so a crash loses one epoch.
    Under torchrun (common/dist.py) every rank draws the same shuffled global batches and trains
    on its share of each through DistributedDataParallel (the mean gradient of the global batch,
    as one process would); on_epoch runs on rank 0 only while the others wait. Alone, nothing of
    this happens.
    """
    device = next(net.parameters()).device     # inputs may stay on the CPU (encode(out='cpu'))
    model = dist.wrap(net, device)
    for epoch in range(start, epochs):
        net.train()
        total, n = 0.0, 0
        bar = tqdm(loader.batches(len(inputs), batch_size, True, gen, drop_last=True),
                   total=len(inputs) // batch_size, desc=f'{desc} epoch {epoch + 1}/{epochs}',
                   disable=not dist.is_main())
        for b in bar:
            b = dist.local(b).to(inputs.device)
            loss = loss_fn(model(inputs[b].to(device)), targets[b.to(targets.device)].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, n = total + loss.item(), n + 1
            bar.set_postfix({key: f'{total / n:.4f}'})
        hist.setdefault(key, []).append(dist.mean(total / max(n, 1)))
        if on_epoch:
            if dist.is_main():
                on_epoch(epoch + 1)
            dist.barrier()
    dist.sync(net)          # every rank evaluates the model rank 0 saves
    net.eval()
    return hist
