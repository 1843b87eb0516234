"""Step 11: the adaptive white-box attack (paper, Appendix E, A1): the attacker adapts G.

The attacker queries the protection with Q of its own public faces (`n_per_id` per identity, one
by default; the same Q for every protection) and holds out a part of them (`holdout`) to
validate on; it never sees the oracle or a private image. On the rest it inverts the protected
features as its amortized attack does (start Amor(F), `amor_steps` momentum steps) and updates G
so that G(z_star) matches the faces it sent: minimise ||G(z_star) - x||^2 plus `id_weight` times
the identity distance 1 - cos(E(G(z_star)), E(x)), E the embedding of the attacker's own identity
model (step 11a: Image2ID/evalTrain.py --split public, trained on public identities only), plus
`keep_weight` times ||G(z) - G0(z)||^2 on random z (G0: the prior before adaptation), which keeps
G a face generator away from the queries. After every epoch it runs the attack as evaluated
(re-inverting with the current G) on the held-out queries, stops after `patience` epochs
without a lower held-out identity distance (`select`), and keeps the best epoch only if its
paired held-out gain over the unadapted prior exceeds `min_gain_se` standard errors; else the
prior (epoch 0). So adapting can only help on the attacker's own data.

Why this schedule (demo models, Q = 128: 96 to adapt on, 32 held out; held-out loss of the
unadapted prior 0.01070 on raw features, 0.01621 on noise_s3): the paper's RMSprop lr 1e-3
collapses G at once (held-out 0.054 after one epoch; earlier, adaptive white-box on raw
features 0.74 -> 0.04), Adam 1e-3 makes it worse every epoch (0.0114), and the earlier
RMSprop 1e-5 left G unchanged. Adam 1e-4 with the keep term improves steadily (raw 0.01052 at
epoch 7, noise 0.01580 at epoch 10); without the keep term it overfits after one epoch
(0.01063, then up).
Why identity (2026-11-30): pixels alone lowered the held-out pixel error and raised the held-out
identity distance (demo, raw 0.0559 -> 0.0580, noise_s3 0.1236 -> 0.1265 in 3 epochs), and
the adapted G scored below the amortized attack on noise (celeba-cpu noise_s2 top-1 0.255 vs
0.300, demo noise_s2.5 0.46 vs 0.52): a lower pixel error is a blurrier face, not a better
identity. With the identity term the held-out identity distance falls (demo raw 0.0559 -> 0.0379
at id_weight 0.1, 0.0362 at 1; noise_s3 0.1236 -> 0.0991 at 0.1, 0.0878 at 1), and held-out
identity is what the attacker early-stops on. id_weight 1 was chosen on these attacker-side
figures only (never on the oracle's). The standard-error rule came after a celeba-cpu run in
which the identity-steered G on noise_s2 gained 0.0031 +- 0.0071 on its held-out queries and
scored 0.265 against the amortized 0.300: a gain within noise is no reason to change G.

Works for any protection (none, crafter_beta<b>, zcrafter_beta<b>, noise_s<s>,
advlearn_lambda<l>): the released public features come from the protection's feature file
(its run with --split public), and a protection that changes the encoder (AdvLearn) is attacked
through its own Enc and amortizer. Saves params/G_adaptive_<protection>.pt (a generator
checkpoint like gan.pt) whose metrics hold the held-out losses before and after.

    python WhiteBoxAttack/adaptiveUpdateG.py --preset demo --protection crafter_beta1
"""
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as nnf  # noqa: E402
from tqdm import tqdm  # noqa: E402

from common import ckpt, config, dist, plots, runtime  # noqa: E402
from Crafter_protection import crafting  # noqa: E402
from dataset import loader  # noqa: E402
from WhiteBoxAttack.attacker import HP as ATTACK_HP, invert  # noqa: E402

ID_WEIGHT = 1.0   # shared with the adaptive decoder (BlackBoxAttack/adaptiveTrainDecoder.py)

# ---- hyperparameters (paper defaults; override with --name value or --preset NAME) ----
HP = dict(
    protection='none',   # none | crafter_beta<b> | zcrafter_beta<b> | noise_s<s> | advlearn_lambda<l>
    n_images=256,        # Q: public queries (the same for every protection)
    n_per_id=1,          # public images per identity among them (> 1 when Q exceeds the ids)
    holdout=0.25,        # part of the queries kept for validation (early stopping)
    epochs=10,           # at most this many passes over the other queries (not stated in the paper)
    patience=3,          # stop after this many epochs without a better held-out loss
    batch_size=64,
    optimizer='adam',    # adam | rmsprop (paper: RMSprop lr 1e-3, which collapses G here)
    lr=1e-4,
    keep_weight=1.0,     # weight of ||G(z) - G0(z)||^2 on random z (0 = off)
    keep_batch=64,       # random z per step for that term
    prior_weight=0.0,    # weight of -D(G(z)) on random z with the GAN's own critic (0 = off)
    select='identity',   # held-out criterion: identity (1 - cos of the attacker's own identity
                         #   embeddings of G(z_star) and x, step 11a) | pixels (||G(z_star) - x||^2)
    id_weight=ID_WEIGHT, # weight of that identity distance in the adaptation loss (0 = pixels only)
    id_model='attacker_id.pkl',   # the attacker's identity model (step 11a; public identities only)
    min_gain_se=1.0,     # keep the adapted G only if its paired held-out gain exceeds this many
                         #   standard errors (0: any gain); else the unadapted prior
    amor_steps=ATTACK_HP['amor_steps'],   # inversion steps per query, as the amortized attack
    inv_lr=ATTACK_HP['lr'],
    momentum=ATTACK_HP['momentum'],
)
PRESETS = {
    # tiny: 12 queries to adapt on and a barely trained G; more, larger steps so the tests see
    #   adaptation within seconds
    'tiny': dict(n_images=16, epochs=4, patience=4, batch_size=4, lr=3e-3, keep_weight=3.0,
                 amor_steps=2, min_gain_se=0.0),     # 4 held-out queries: no standard error to speak of
    'demo': dict(n_images=128, amor_steps=40),
    'celeba-cpu': dict(n_images=256, amor_steps=60),
}
# -----------------------------------------------------------------------------------------


def adaptive_name(protection):
    return f'G_adaptive_{protection}.pt'


def attacker_models(cfg, meta, device, protection):
    """Enc, G, D, Amor as the white-box attacker of `protection` has them."""
    return ckpt.load_attacker(cfg, meta, device, enc=ckpt.protection_enc(protection),
                              amor=ckpt.protection_amor(protection))


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
    """The attacker's own identity model (step 11a: trained on public identities only), frozen;
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


def reconstruct(Enc, G, Amor, F, cfg):
    """The amortized attack with generator G: G(z_star), z_star from Amor(F) (no grads into G)."""
    req = [p.requires_grad for p in G.parameters()]
    for p in G.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        z0 = Amor(F)
    z, _ = invert(Enc, G, F, z0, cfg.amor_steps, cfg.inv_lr, cfg.momentum)
    for p, r in zip(G.parameters(), req):
        p.requires_grad_(r)
    return z


def attack_scores(Enc, G, Amor, F, images, cfg, idnet=None):
    """heldout_scores of the attack as evaluated (amortized start, amor_steps of descent,
    re-inverted with this G) on the queries (F, images)."""
    return heldout_scores(lambda f: G(reconstruct(Enc, G, Amor, f, cfg)), F, images, idnet,
                          cfg.batch_size)


def adapt(Enc, G, D, Amor, F, images, cfg, gen, idnet=None):
    """Adapt a copy of G to (F, images); returns (best G, metrics). Epoch 0 = the prior.
    idnet: the attacker's identity model (identity_model), for --select identity / --id_weight."""
    device = F.device
    tr, va = query_split(len(F), cfg.holdout, cfg.seed)
    tr, va = tr.to(device), va.to(device)
    G0 = copy.deepcopy(G).eval()
    G = copy.deepcopy(G).eval()    # batch-norm statistics stay those of the prior
    for p in G.parameters():
        p.requires_grad_(True)
    params = list(G.parameters())
    if cfg.optimizer == 'adam':
        opt = torch.optim.Adam(params, lr=cfg.lr)
    elif cfg.optimizer == 'rmsprop':
        opt = torch.optim.RMSprop(params, lr=cfg.lr)
    else:
        raise config.ConfigError(f"--optimizer {cfg.optimizer!r}: expected 'adam' or 'rmsprop'")

    def val(g):
        return attack_scores(Enc, g, Amor, F[va], images[va], cfg, idnet)

    sel = Selector(cfg.select, G, val(G), cfg.min_gain_se)
    train_hist = []
    print(f'held-out {cfg.select} before adapting: {sel.best:.5f} ({len(va)} held out, {len(tr)} to adapt on)')
    bs = min(cfg.batch_size, len(tr))
    for epoch in range(1, cfg.epochs + 1):
        total, n = 0.0, 0
        bar = tqdm(loader.batches(len(tr), bs, True, gen), total=-(-len(tr) // bs),
                   desc=f'adapt G epoch {epoch}/{cfg.epochs}')
        for b in bar:
            b = tr[b.to(device)]
            z = reconstruct(Enc, G, Amor, F[b], cfg)
            loss = attack_loss(G(z), images[b], idnet, cfg.id_weight)
            total, n = total + loss.item(), n + 1
            if cfg.keep_weight > 0 or cfg.prior_weight > 0:
                zr = torch.randn(cfg.keep_batch, G.latent_dim, generator=gen).to(device)
                out = G(zr)
                if cfg.keep_weight > 0:
                    with torch.no_grad():
                        ref = G0(zr)
                    loss = loss + cfg.keep_weight * (out - ref).pow(2).mean()
                if cfg.prior_weight > 0:
                    loss = loss - cfg.prior_weight * D(out).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.set_postfix(loss=f'{total / n:.4f}')
        train_hist.append(total / max(n, 1))
        scores = val(G)
        better = sel.record(epoch, G, scores)
        print(f'epoch {epoch}: query loss {train_hist[-1]:.5f}, held-out pixels {scores["pixels"]:.5f}, '
              f'identity {scores["identity"]:.4f}' + (' (best)' if better else ''))
        if sel.waited >= cfg.patience:
            print(f'no better held-out {cfg.select} for {cfg.patience} epochs: stopping')
            break
    res = sel.finish(G)
    for p in G.parameters():
        p.requires_grad_(False)
    return G, {**res, 'epochs_run': len(train_hist), 'train_history': train_hist,
               'id_weight': cfg.id_weight,
               'queries': len(F), 'adapt_queries': len(tr), 'heldout_queries': len(va)}


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, description=__doc__)
    if not 0 < cfg.holdout < 1:
        raise config.ConfigError(f'--holdout {cfg.holdout}: expected a fraction between 0 and 1')
    device, clock = runtime.start(cfg, 'adaptiveUpdateG')
    meta = loader.load_meta(cfg.data_dir)
    Enc, G, D, Amor = attacker_models(cfg, meta, device, cfg.protection)
    pub = loader.load(cfg.data_dir, 'public', device, meta)
    pub = crafting.public_queries(cfg, cfg.protection, pub, cfg.n_images, cfg.n_per_id)
    feats = crafting.protected_features(cfg, cfg.protection, pub, Enc, device)
    print(f'adapting G to {cfg.protection} with {len(pub)} protected public queries')
    idnet = identity_model(cfg, meta, device)
    gen = torch.Generator().manual_seed(cfg.seed)
    G_a, res = adapt(Enc, G, D, Amor, feats, pub.images.to(device), cfg, gen, idnet)
    res['protection'] = cfg.protection
    print(f"held-out {cfg.select}: unadapted {res['heldout_loss_unadapted']:.5f} -> adapted "
          f"{res['heldout_loss_adapted']:.5f} (epoch {res['best_epoch']} of {res['epochs_run']})")
    out_file = save_adapted(cfg, meta, 'gan', {'G': G_a, 'D': D}, res, adaptive_name(cfg.protection),
                            'adaptive G')
    clock.finish('adaptiveUpdateG', queries=len(pub), saved=str(out_file),
                 **{k: res[k] for k in ('heldout_loss_unadapted', 'heldout_loss_adapted', 'best_epoch')})
    return res


if __name__ == '__main__':
    main()
