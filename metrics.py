"""Privacy and utility metrics shared by every stage and by evaluate.py.

- identity: top-k accuracy of the oracle on reconstructions (Eval Acc);
- image similarity to the originals: SSIM and FSIM (Zhang et al. 2011, the real feature
  similarity index with phase congruency, from `piq`, rather than a cosine stand-in);
- feature similarity: cosine similarity of the oracle's embeddings of original and
  reconstruction;
- utility: ROC AUC per binary attribute and its mean.
"""
import math

import torch


def topk_accuracy(logits, labels, ks=(1, 5)):
    """Fraction of rows whose label is among the k highest logits, for each k."""
    labels = labels.to(logits.device).view(-1, 1)
    order = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    return {k: (order[:, :k] == labels).any(dim=1).float().mean().item() for k in ks}


def auc(scores, targets):
    """ROC AUC of one binary attribute (Mann-Whitney U with average ranks for ties).

    Returns nan when the targets hold a single class (AUC is undefined there).
    """
    scores = torch.as_tensor(scores, dtype=torch.float64).flatten()
    targets = torch.as_tensor(targets).flatten().bool()
    n_pos = int(targets.sum())
    n_neg = targets.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = scores.argsort()
    sorted_scores = scores[order]
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, scores.numel() + 1, dtype=torch.float64)
    # average the ranks of tied scores
    uniq, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True,
                                                     return_counts=True)
    if len(uniq) < scores.numel():
        ends = counts.cumsum(0).double()
        avg = ends - (counts.double() - 1) / 2
        ranks[order] = avg[inverse]
    u = ranks[targets].sum() - n_pos * (n_pos + 1) / 2
    return (u / (n_pos * n_neg)).item()


def attribute_aucs(scores, targets, names=None):
    """Per-attribute AUC over the columns of N x A scores and 0/1 targets; {name: auc}."""
    scores, targets = torch.as_tensor(scores).cpu(), torch.as_tensor(targets).cpu()
    names = names or [str(i) for i in range(scores.shape[1])]
    return {n: auc(scores[:, j], targets[:, j]) for j, n in enumerate(names)}


def mean_auc(scores, targets):
    """Mean AUC over the attributes where both classes occur (nan if none)."""
    vals = [v for v in attribute_aucs(scores, targets).values() if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else math.nan


def ssim(x, y):
    """Per-image SSIM of two N x 3 x S x S batches in [0, 1], computed on x's device (the GPU
    when the reconstructions are there); the N scores come back on the CPU."""
    import piq
    x, y = _pair(x, y)
    return piq.ssim(x, y, data_range=1.0, reduction='none', kernel_size=_kernel(x)).cpu()


def fsim(x, y):
    """Per-image FSIMc (colour feature similarity, Zhang et al. 2011) in [0, 1], on x's device;
    the N scores come back on the CPU."""
    import piq
    x, y = _pair(x, y)
    return piq.fsim(x, y, data_range=1.0, reduction='none', chromatic=True).cpu()


def cosine(a, b):
    """Row-wise cosine similarity of two N x D embeddings."""
    return torch.nn.functional.cosine_similarity(a.flatten(1).float(), b.flatten(1).float(), dim=1)


def _pair(x, y):
    if x.shape != y.shape:
        raise ValueError(f'image batches differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}')
    # on x's device: piq runs on CUDA tensors, so SSIM/FSIM need not copy images to the CPU
    return x.detach().float().clamp(0, 1), y.detach().to(x.device).float().clamp(0, 1)


def _kernel(x):
    # the standard 11 x 11 window, smaller for tiny images (must be odd and fit the image)
    k = min(11, x.shape[-1] - (1 - x.shape[-1] % 2))
    return max(3, k)


@torch.no_grad()
def oracle_outputs(oracle, images, batch_size=256):
    """(logits, embeddings) of the oracle for float images in [0, 1], batch by batch."""
    dev = next(oracle.parameters()).device
    logits, emb = [], []
    for i in range(0, len(images), batch_size):
        e = oracle.embed(images[i:i + batch_size].to(dev).float())
        emb.append(e.float().cpu())
        logits.append(oracle.logits(e).float().cpu())
    return torch.cat(logits), torch.cat(emb)


def reconstruction_scores(oracle, recon, originals, labels, train=None, emb_originals=None):
    """Everything measured on a set of reconstructions of known images by one evaluator.

    recon, originals: float N x 3 x S x S in [0, 1]; labels: oracle class of each original;
    train: optional (embeddings, labels) of the evaluator's eval_train images, for the KNN
    distance; emb_originals: the originals' embeddings, when already computed (dlib is slow).
    Returns eval_acc (top-1), eval_acc_top5, ssim, fsim, psnr, feature_sim (means over images)
    and, with `train`, knn_distance (mean).
    """
    logits, emb_r = oracle_outputs(oracle, recon)
    emb_o = oracle_outputs(oracle, originals)[1] if emb_originals is None else emb_originals
    acc = topk_accuracy(logits, labels.cpu(), (1, 5))
    return {'eval_acc': acc[1], 'eval_acc_top5': acc[5],
            'ssim': ssim(recon, originals).mean().item(),
            'fsim': fsim(recon, originals).mean().item(),
            'psnr': psnr(recon, originals, eps=1e-10).mean().item(),
            'feature_sim': cosine(emb_r, emb_o).mean().item(),
            'n': int(len(recon)),
            **({} if train is None else {'knn_distance': knn_distance(emb_r, train[0], train[1], labels)[0]})}


def strongest_evaluator(by_evaluator):
    """(name, scores) of the evaluator with the highest top-1 ({name: {'eval_acc': ...}}); ties go
    to the first. An attack's privacy figure is the worst case over evaluators, as over attacks."""
    return max(by_evaluator.items(), key=lambda kv: kv[1]['eval_acc'])


# ---- privacy as the worst case over attacks, and the attribute-linkage attack -------------

def worst_case(attacks):
    """The strongest attack of one protection: {'attack': name, 'eval_acc': top-1} with the
    highest top-1 over every attack that ran ({name: {'eval_acc': ...}}), or None if none ran.
    Ties go to the first attack in the dict's order."""
    best = None
    for name, s in attacks.items():
        v = (s or {}).get('eval_acc')
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        if best is None or v > best['eval_acc']:
            best = {'attack': name, 'eval_acc': float(v), 'eval_acc_top5': s.get('eval_acc_top5'),
                    'evaluator': s.get('evaluator')}
    return best


def identity_profiles(probs, labels, n_ids):
    """Mean row of `probs` (N x A) per identity label 0..n_ids-1 (NaN rows where none)."""
    probs, labels = probs.float().cpu(), labels.cpu()
    out = torch.full((n_ids, probs.shape[1]), float('nan'))
    for lab in torch.unique(labels).tolist():
        out[lab] = probs[labels == lab].mean(0)
    return out


def linkage_scores(queries, profiles, labels, ks=(1, 5)):
    """Top-k accuracy of naming each query's identity as the nearest profile (Euclidean);
    identities without a profile (NaN rows) are never named."""
    d = torch.cdist(queries.float().cpu(), profiles.nan_to_num(0.0))
    d[:, torch.isnan(profiles).any(1)] = float('inf')
    acc = topk_accuracy(-d, labels.cpu(), ks)
    return {'eval_acc': acc[ks[0]], 'eval_acc_top5': acc[ks[-1]] if len(ks) > 1 else None}


# ---- pixel fidelity and identity distance to the evaluator's training images -------------

def psnr(x, y, eps=0.0):
    """Per-image PSNR in dB of two N x 3 x S x S batches in [0, 1] (peak 1): an N-tensor on the
    CPU, like ssim/fsim; take .mean() for a summary. Identical images give inf (eps=0, the
    default; eps > 0 is added to the MSE and caps it), and so does a mean over a set holding an
    exact copy: report the median, or pass eps, where that can happen."""
    x, y = _pair(x, y)
    mse = (x - y).pow(2).flatten(1).mean(1).double()
    return (10 * torch.log10(1.0 / (mse + eps))).float().cpu()


def knn_distance(recon_emb, train_emb, train_labels, labels):
    """For each reconstruction, the cosine distance (1 - cosine similarity, after L2-normalising
    both embeddings; 0 = same direction, 2 = opposite) in the evaluator's embedding to the NEAREST
    eval_train image of its true identity `labels[i]` (the attack's best match in the data the
    evaluator knows). Returns (mean over images, per-image N-tensor on the CPU); an identity with
    no eval_train image gives nan there, and the mean skips nans (nan if all are)."""
    r = torch.nn.functional.normalize(torch.as_tensor(recon_emb).detach().float().cpu().flatten(1), dim=1)
    t = torch.nn.functional.normalize(torch.as_tensor(train_emb).detach().float().cpu().flatten(1), dim=1)
    tl, lab = torch.as_tensor(train_labels).cpu().view(1, -1), torch.as_tensor(labels).cpu().view(-1, 1)
    dist = (1 - r @ t.T).clamp_min(0)                       # N x M cosine distances
    dist = dist.masked_fill(tl != lab, float('inf')).min(1).values
    dist[torch.isinf(dist)] = float('nan')
    finite = dist[~torch.isnan(dist)]
    return (finite.mean().item() if finite.numel() else math.nan), dist
