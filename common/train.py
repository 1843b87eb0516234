"""The small training helpers every stage shares: features of a split, batched prediction, and
the one mini-batch loop over fixed (input, target) tensors (Dec, Feature2ID, the cloud model of
the training scenario, the adaptive decoder)."""
import torch
from tqdm import tqdm

from dataset import loader


@torch.no_grad()
def encode(Enc, split, device, batch_size=256):
    """Enc features of a whole split, computed once (training reuses them every epoch)."""
    return torch.cat([Enc(split.x(b.to(device))) for b in loader.batches(len(split), batch_size)])


@torch.no_grad()
def predict(net, feats, batch_size=256):
    net.eval()
    return torch.cat([net(feats[i:i + batch_size]) for i in range(0, len(feats), batch_size)]).cpu()


def fit(net, opt, inputs, targets, loss_fn, epochs, batch_size, gen, desc, hist, key='loss',
        start=0, on_epoch=None):
    """Epochs `start`..`epochs` of shuffled mini-batches; appends the epoch mean to hist[key].

    on_epoch(epoch) runs after each epoch (periodic checkpoints), so a crash loses one epoch.
    """
    for epoch in range(start, epochs):
        net.train()
        total, n = 0.0, 0
        bar = tqdm(loader.batches(len(inputs), batch_size, True, gen, drop_last=True),
                   total=len(inputs) // batch_size, desc=f'{desc} epoch {epoch + 1}/{epochs}')
        for b in bar:
            b = b.to(inputs.device)
            loss = loss_fn(net(inputs[b]), targets[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, n = total + loss.item(), n + 1
            bar.set_postfix({key: f'{total / n:.4f}'})
        hist.setdefault(key, []).append(total / max(n, 1))
        if on_epoch:
            on_epoch(epoch + 1)
    net.eval()
    return hist
