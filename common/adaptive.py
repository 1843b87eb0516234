"""What the adaptive attacks share (WhiteBoxAttack/adaptiveUpdateG.py, BlackBoxAttack/
adaptiveTrainDecoder.py, Feature2ID/f2id_adaptive.py): the adapted models' file names, the split
of the attacker's public queries into adapt / held-out, the attacker's own identity model and the
held-out selection that keeps an adapted model only when the attacker's own data shows a gain.
"""
import copy

import torch
import torch.nn.functional as nnf

from common import ckpt, config, dist, plots, release
from dataset import loader

ID_WEIGHT = 1.0   # shared with the adaptive decoder (BlackBoxAttack/adaptiveTrainDecoder.py)


def g_name(protection):
    """The adapted generator of the adaptive white-box attack (A1)."""
    return f'G_adaptive_{protection}.pt'


def dec_name(protection):
    """The adapted decoder of the adaptive black-box attack."""
    return f'dec_adaptive_{protection}.pkl'


def f2id_name(protection):
    """Feature2ID fine-tuned on a protection's released eval_train features."""
    return f'f2id_adaptive_{protection}.pt'


def attacker_models(cfg, meta, device, protection):
    """Enc, G, D, Amor as the white-box attacker of `protection` has them."""
    return ckpt.load_attacker(cfg, meta, device, enc=release.enc_name(protection),
                              amor=release.amor_name(protection))


def query_split(n, holdout, seed):
    """(adapt, held-out) indices of the n queries, a seeded split."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    n_held = max(1, int(round(holdout * n))) if n > 1 else 0
    return perm[n_held:].sort().values, perm[:n_held].sort().values


def save_adapted(cfg, meta, kind, models, res, name, title):
    """Write an adapted model (rank 0 only under torchrun) with its held-out and training curves;
    shared by the adaptive white-box and black-box attacks. Returns the checkpoint path."""
    out_file = ckpt.path(cfg, name)
    if dist.is_main():
        ckpt.save(out_file, kind=kind, models=models, cfg=cfg, meta=meta, metrics=res)
        h, t = res['heldout_history'], res['train_history']
        plots.save_curves({f'held-out {res["select"]}': (list(range(len(h))), h),
                           'adapt loss': (list(range(1, len(t) + 1)), t)},
                          out_file.with_suffix('.png'), f'{title} ({cfg.protection})', xlabel='epoch')
    dist.barrier()
    return out_file


def identity_model(cfg, meta, device):
    """The attacker's own identity model (step 10: trained on public identities only), frozen;
    None when neither the held-out criterion nor the loss uses it."""
    if cfg.select not in ('identity', 'pixels'):
        raise config.ConfigError(f"--select {cfg.select!r}: expected 'identity' or 'pixels'")
    if cfg.select == 'pixels' and cfg.id_weight == 0:
        return None
    net = ckpt.build(ckpt.load(cfg, cfg.id_model, 'oracle', meta), 'oracle', device)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def identity_distance(idnet, recon, images):
    """1 - cos(E(recon), E(x)) per image, E the attacker's identity embedding; images uint8.
    Pixel error rewards the blur that averages faces out; this rewards keeping who it is."""
    with torch.no_grad():
        e_x = idnet.embed(images.float().div(255))
    return 1 - nnf.cosine_similarity(idnet.embed(recon), e_x, dim=1)


def attack_loss(recon, images, idnet, id_weight):
    """What adaptation minimises: ||recon - x||^2 per pixel, plus id_weight x identity distance."""
    loss = (recon - images.float().div(255)).pow(2).mean()
    if id_weight > 0:
        loss = loss + id_weight * identity_distance(idnet, recon, images).mean()
    return loss


def heldout_scores(recon_fn, F, images, idnet, batch_size):
    """Mean pixel error and (with idnet) identity distance of recon_fn(F) against the images;
    'per_query' holds both per image (the paired comparison of Selector needs them)."""
    pix, ident = [], []
    for b in loader.batches(len(F), batch_size):
        b = b.to(F.device)
        recon = recon_fn(F[b])
        with torch.no_grad():
            pix.append((recon - images[b].float().div(255)).pow(2).flatten(1).mean(1).cpu())
            ident.append(identity_distance(idnet, recon, images[b]).cpu() if idnet is not None
                         else torch.full((len(b),), float('nan')))
    pix, ident = (torch.cat(v) if v else torch.zeros(0) for v in (pix, ident))
    mean = (lambda v: v.mean().item() if len(v) else float('nan'))
    return {'pixels': mean(pix), 'identity': mean(ident), 'per_query': {'pixels': pix, 'identity': ident}}


class Selector:
    """Chooses between the unadapted model (epoch 0) and the best adapted epoch on the held-out
    queries, and counts the epochs since the held-out criterion last improved (early stopping).

    The adapted model is kept only when its paired held-out gain over the unadapted one (the
    mean over queries of criterion(epoch 0) - criterion(best), the same queries for both) exceeds
    `min_gain_se` standard errors of that mean; otherwise the unadapted model is kept. With 64
    held-out queries the best of 10 epochs can look better by chance alone: an attacker adopts a
    change only when its own data shows it.
    """

    def __init__(self, select, model, scores, min_gain_se=1.0):
        self.select, self.min_gain_se, self.waited = select, min_gain_se, 0
        self.hist = {'pixels': [], 'identity': [], 'criterion': []}
        self.record(0, model, scores)
        self.state0, self.q0 = self.state, self.qbest

    def record(self, epoch, model, scores):
        v = scores[self.select]
        for k in ('pixels', 'identity'):
            self.hist[k].append(scores[k])
        self.hist['criterion'].append(v)
        better = epoch == 0 or v < self.best
        if better:
            self.best, self.best_epoch, self.waited = v, epoch, 0
            self.state, self.qbest = copy.deepcopy(model.state_dict()), scores['per_query'][self.select]
        else:
            self.waited += 1
        return better

    def gain(self):
        """(paired mean gain of the best epoch over epoch 0, its standard error)."""
        d = self.q0 - self.qbest
        return d.mean().item(), (d.std().item() / len(d) ** 0.5 if len(d) > 1 else float('inf'))

    def chosen(self):
        """(epoch, state) to keep: the best epoch if its gain passes the test, else epoch 0."""
        g, se = self.gain()
        if self.best_epoch > 0 and g > self.min_gain_se * se:
            return self.best_epoch, self.state
        return 0, self.state0

    def finish(self, model):
        """Load the chosen state into model, say what was kept and why; returns metrics()."""
        res = self.metrics()
        print(f"held-out {self.select} gain of the best epoch ({self.best_epoch}): "
              f"{res['heldout_gain']:.5f} +- {res['heldout_gain_se']:.5f} -> keeping epoch {res['best_epoch']}")
        model.load_state_dict(self.chosen()[1])
        return res

    def metrics(self):
        h = self.hist
        epoch, _ = self.chosen()
        g, se = self.gain()
        return {'select': self.select, 'heldout_loss_unadapted': h['criterion'][0],
                'heldout_loss_adapted': h['criterion'][epoch], 'best_epoch': epoch,
                'best_heldout_epoch': self.best_epoch, 'heldout_gain': g, 'heldout_gain_se': se,
                'min_gain_se': self.min_gain_se,
                'heldout_history': h['criterion'], 'heldout_pixels_history': h['pixels'],
                'heldout_identity_history': h['identity'],
                'heldout_pixels_unadapted': h['pixels'][0],
                'heldout_pixels_adapted': h['pixels'][epoch],
                'heldout_identity_unadapted': h['identity'][0],
                'heldout_identity_adapted': h['identity'][epoch]}
