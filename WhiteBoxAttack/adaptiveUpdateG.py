"""Step 15: the adaptive white-box attack (paper, Appendix E, A1): the attacker adapts G.

The attacker queries the protection with Q of its own public faces (`n_per_id` per identity, one
by default; the same Q for every protection) and holds out a part of them (`holdout`) to
validate on; it never sees the oracle or a private image. On the rest it inverts the protected
features as its amortized attack does (start Amor(F), `amor_steps` momentum steps) and updates G
so that G(z_star) matches the faces it sent: minimise ||G(z_star) - x||^2 plus `id_weight` times
the identity distance 1 - cos(E(G(z_star)), E(x)), E the embedding of the attacker's own identity
model (step 10: Image2ID/evalTrain.py --split public, trained on public identities only), plus
`keep_weight` times ||G(z) - G0(z)||^2 on random z (G0: the prior before adaptation), which keeps
G a face generator away from the queries. After every epoch it runs the attack as evaluated
(re-inverting with the current G) on the held-out queries, stops after `patience` epochs
without a lower held-out identity distance (`select`), and keeps the best epoch only if its
paired held-out gain over the unadapted prior exceeds `min_gain_se` standard errors; else the
prior (epoch 0). So adapting can only help on the attacker's own data.

Why these settings: docs/DESIGN.md

Works for any protection (none, crafter_beta<b>, zcrafter_beta<b>, noise_s<s>,
advlearn_lambda<l>): the released public features come from the protection's feature file
(its run with --split public), and a protection that changes the encoder (AdvLearn) is attacked
through its own Enc and amortizer. Saves params/G_adaptive_<protection>.pt (a generator
checkpoint like gan.pt) whose metrics hold the held-out losses before and after.

    python WhiteBoxAttack/adaptiveUpdateG.py --preset demo --protection crafter_beta1
"""
import copy

import torch
from tqdm import tqdm

from common import adaptive, config, release, runtime
from dataset import loader
from WhiteBoxAttack.attacker import HP as ATTACK_HP, invert

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
                         #   embeddings of G(z_star) and x, step 10) | pixels (||G(z_star) - x||^2)
    id_weight=adaptive.ID_WEIGHT, # weight of that identity distance in the adaptation loss (0 = pixels only)
    id_model='attacker_id.pkl',   # the attacker's identity model (step 10; public identities only)
    min_gain_se=1.0,     # keep the adapted G only if its paired held-out gain exceeds this many
                         #   standard errors (0: any gain); else the unadapted prior
    amor_steps=ATTACK_HP['amor_steps'],   # inversion steps per query, as the amortized attack
    inv_lr=ATTACK_HP['lr'],
    momentum=ATTACK_HP['momentum'],
)
# what needs more than "finite and >= 0" (common/config.py): counts, learning rates, fractions
RANGES = dict(holdout='[0,1)', epochs='>=1', patience='>=1', batch_size='>=1', lr='>0',
              keep_batch='>=1', inv_lr='>0', momentum='[0,1)')
PRESETS = {
    # tiny: 12 queries to adapt on and a barely trained G; more, larger steps so the tests see
    #   adaptation within seconds
    'tiny': dict(n_images=16, epochs=4, patience=4, batch_size=4, lr=3e-3, keep_weight=3.0,
                 amor_steps=2, min_gain_se=0.0),     # 4 held-out queries: no standard error to speak of
    'demo': dict(n_images=128, amor_steps=40),
    'celeba-cpu': dict(n_images=256, amor_steps=60),
}
# -----------------------------------------------------------------------------------------


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
    """adaptive.heldout_scores of the attack as evaluated (amortized start, amor_steps of descent,
    re-inverted with this G) on the queries (F, images)."""
    return adaptive.heldout_scores(lambda f: G(reconstruct(Enc, G, Amor, f, cfg)), F, images, idnet,
                          cfg.batch_size)


def adapt(Enc, G, D, Amor, F, images, cfg, gen, idnet=None):
    """Adapt a copy of G to (F, images); returns (best G, metrics). Epoch 0 = the prior.
    idnet: the attacker's identity model (adaptive.identity_model), for --select identity / --id_weight."""
    device = F.device
    tr, va = adaptive.query_split(len(F), cfg.holdout, cfg.seed)
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

    sel = adaptive.Selector(cfg.select, G, val(G), cfg.min_gain_se)
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
            loss = adaptive.attack_loss(G(z), images[b], idnet, cfg.id_weight)
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
    cfg = config.parse(HP, PRESETS, argv, ranges=RANGES, description=__doc__)
    if not 0 < cfg.holdout < 1:
        raise config.ConfigError(f'--holdout {cfg.holdout}: expected a fraction between 0 and 1')
    device, clock = runtime.start(cfg, 'adaptiveUpdateG')
    meta = loader.load_meta(cfg.data_dir)
    Enc, G, D, Amor = adaptive.attacker_models(cfg, meta, device, cfg.protection)
    pub = loader.load(cfg.data_dir, 'public', device, meta)
    pub = release.public_queries(cfg, cfg.protection, pub, cfg.n_images, cfg.n_per_id)
    feats = release.protected_features(cfg, cfg.protection, pub, Enc, device)
    print(f'adapting G to {cfg.protection} with {len(pub)} protected public queries')
    idnet = adaptive.identity_model(cfg, meta, device)
    gen = torch.Generator().manual_seed(cfg.seed)
    G_a, res = adapt(Enc, G, D, Amor, feats, pub.images.to(device), cfg, gen, idnet)
    res['protection'] = cfg.protection
    print(f"held-out {cfg.select}: unadapted {res['heldout_loss_unadapted']:.5f} -> adapted "
          f"{res['heldout_loss_adapted']:.5f} (epoch {res['best_epoch']} of {res['epochs_run']})")
    out_file = adaptive.save_adapted(cfg, meta, 'gan', {'G': G_a, 'D': D}, res, adaptive.g_name(cfg.protection),
                            'adaptive G')
    clock.finish('adaptiveUpdateG', queries=len(pub), saved=str(out_file),
                 **{k: res[k] for k in ('heldout_loss_unadapted', 'heldout_loss_adapted', 'best_epoch')})
    return res


if __name__ == '__main__':
    main()
