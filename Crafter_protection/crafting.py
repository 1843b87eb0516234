"""What Crafter (Algorithm 1) and z-Crafter (Algorithm 3) share: the per-batch privacy critic,
the epsilon-PII estimate, and the resumable driver that crafts a split batch by batch.

Outputs of a run, under <crafted_dir>/<run tag>/<protection>/ (e.g. Crafter_result/demo/crafter_beta1):
    config_<split>.json          the resolved settings (a rerun must match them)
    batches/<split>_NNNN.pt      crafted features of one batch, with image names and its log
    features_<split>.pt          every finished batch, in split order (what attacks read)
    report_<split>.json          per-batch eps-PII, L_u, times, passes; their means
    grid_<split>.png             originals / raw reconstruction / reconstruction of crafted F
eps-PII (and the grid) come from the attacker's side: the amortized white-box attack on the
released F (attacker_view), the same for every protection and for the raw features.
    curves_<split>.png           privacy and utility per outer step (first batch)
A rerun skips finished batches; each file is written atomically, so an interruption loses at
most the batch in progress.
Scale-out: any number of processes may craft one run folder at once (torchrun ranks, array jobs,
other machines on a shared disk): each batch is claimed first (batches/<split>_NNNN.claim, see
common/dist.py), so it is crafted once; a dead worker's batch is taken over (at once on the same
host, --claim_timeout_s after it was claimed from another host); the last worker to finish
merges. The features do not depend on the number of workers (each batch's seed is its index).
"""
import json
import math
import time
from types import SimpleNamespace

import torch

from common import ckpt, dist, io, plots, release, runtime, wgan
from models import Critic
from dataset import loader
from WhiteBoxAttack import attacker

# settings that change what a run computes (features or report); a rerun into the same folder
# must keep them: every HP of featureCrafter.py and zCrafter.py except the split and run name
# (in the folder and file names) and claim_timeout_s; attack_steps is also compared resolved
# (0 = attacker.py's preset value). The checkpoints and data a run used are compared too (their
# ids and digests, config_<split>.json's "provenance").
RESULT_KEYS = ('beta', 'outer_steps', 'batch_size', 'lr', 'critic_lr', 'n_critic', 'critic_batch',
               'gp', 'gp_high', 'critic_width', 'inner_start', 'inner_steps', 'first_inner_steps',
               'inner_lr', 'inner_momentum', 'hypergrad', 'neumann_alpha', 'neumann_terms',
               'cg_iters', 'cg_damping', 'eps_steps', 'attack_steps', 'seed', 'data_dir',
               'params_dir', 'n_per_id', 'n_images')


class CountingEnc(torch.nn.Module):
    """Enc that counts its forward passes (the unit of crafting cost: one Enc(G(z)) each)."""

    def __init__(self, Enc):
        super().__init__()
        self.Enc, self.passes = Enc, 0

    def forward(self, x):
        self.passes += 1
        return self.Enc(x)


class PrivacyCritic:
    """A fresh WGAN-GP critic per batch, separating reconstructions from prior faces G(z_r).

    Its Wasserstein estimate E D(prior) - E D(recon) is the running eps-PII; the penalty weight
    is raised from gp to gp_high while the penalty exceeds 1 (the authors' schedule).
    """

    def __init__(self, img_size, cfg, device, generator):
        self.D = Critic(img_size, cfg.critic_width).to(device)
        self.opt = torch.optim.Adam(self.D.parameters(), lr=cfg.critic_lr, betas=(0.5, 0.999))
        self.gp_weight, self.cfg, self.gen = cfg.gp, cfg, generator

    def update(self, recon, prior):
        w = gp = 0.0
        n = len(recon)
        for _ in range(self.cfg.n_critic):
            i = torch.randint(n, (min(self.cfg.critic_batch, n),), generator=self.gen).to(recon.device)
            j = torch.randint(len(prior), (len(i),), generator=self.gen).to(recon.device)
            # the prior faces are the critic's "real" side: privacy means looking like them
            w, gp = wgan.critic_step(self.D, self.opt, prior[j], recon[i], self.gp_weight)
            self.gp_weight = self.cfg.gp_high if gp > 1 else self.cfg.gp
        return w, gp

    def privacy_loss(self, recon):
        """L_p = -mean D(recon): small when reconstructions look like prior faces."""
        return -self.D(recon).mean()


def eps_pii(recon, prior, cfg, device, seed, steps=None):
    """epsilon-PII of a batch: the Wasserstein distance between reconstructions and prior faces
    estimated by a critic trained from scratch (same recipe for every protection: the crafter's
    critic settings, paper values where the caller's config has none)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    paper = dict(critic_lr=5e-4, critic_batch=32, gp=20.0, gp_high=40.0, critic_width=64)
    settings = SimpleNamespace(**{k: cfg.get(k, v) for k, v in paper.items()}, n_critic=1)
    critic = PrivacyCritic(recon.shape[-1], settings, device, gen)
    for _ in range(steps or cfg.eps_steps):
        critic.update(recon.detach(), prior)
    with torch.no_grad():
        return (critic.D(prior).mean() - critic.D(recon).mean()).item()


def inner_loss(Enc, G):
    """L_inv summed over the batch (each image's term independent), as the attacker's."""
    return lambda z, F: attacker.inversion_loss(Enc, G, z, F).sum()


def attack_steps(cfg):
    """Iterations of the amortized white-box attack at cfg's preset (the attack's own setting)."""
    return cfg.get('attack_steps') or attacker.PRESETS.get(cfg.get('preset') or '', {}).get(
        'amor_steps', attacker.HP['amor_steps'])


def attacker_view(Enc, G, Amor, F, cfg):
    """What an attacker who knows only the released F reconstructs: the amortized white-box
    attack (start at Amor(F), the attack's own steps, lr and momentum), the same for every
    protection and for raw features. Nothing the crafter knows (its z_star, a secret z) is used."""
    with torch.no_grad():
        z0 = Amor(F)
    z, _ = attacker.invert(Enc, G, F.detach(), z0, attack_steps(cfg), attacker.HP['lr'],
                           attacker.HP['momentum'])
    with torch.no_grad():
        return G(z)






def identity_model(cfg, meta, device):
    """The defender's identity embedding of features: Feature2ID's network trained on the public
    identities (params/f2id_public.pt), up to its last layer, frozen."""
    net = ckpt.build(ckpt.load(cfg, 'f2id_public.pt', 'f2id', meta), 'f2id', device).eval()
    return net.requires_grad_(False).f[:-1]


def run(cfg, protection, craft_batch, title):
    """Craft every batch of cfg.split with craft_batch(x, f0, m, cfg, gen) -> dict or None.

    Any number of processes may run this on one run folder at once (torchrun ranks, array jobs,
    other machines): each batch is claimed first (common/dist.claim: an atomic claim file beside
    the batch file), so each is crafted once; rank r of W starts at batches r, r + W, ... and then
    helps with the rest; a dead worker's claim is taken over. A process with nothing left to claim
    polls the batches others hold (every POLL_S), and the last one to finish writes features_<split>.pt and the
    report. Each batch's random streams depend only on its index, so the features are the same
    whatever the number of workers.
    """
    device, clock = runtime.start(cfg, title)
    meta = loader.load_meta(cfg.data_dir)
    Enc, G, _, Amor = ckpt.load_attacker(cfg, meta, device)
    out = release.run_dir(cfg, protection)
    _check_same_run(cfg, out)
    split = release.select(loader.load(cfg.data_dir, cfg.split, device, meta), cfg)
    m = SimpleNamespace(Enc=CountingEnc(Enc), G=G, Amor=Amor, img_size=meta['img_size'],
                        Id=identity_model(cfg, meta, device) if cfg.get('gamma', 0) > 0 else None)
    batches = list(loader.batches(len(split), cfg.batch_size))
    timeout = float(cfg.get('claim_timeout_s', CLAIM_TIMEOUT_S))
    who = f'rank {dist.rank()}/{dist.world()} ' if dist.world() > 1 else ''
    dist.say(f'{title}: {who}{len(split)} {cfg.split} images in {len(batches)} batches -> {io.rel(out)}')

    def craft(k, b, file):
        seed = cfg.seed * 100003 + k
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        x = split.x(b.to(device))
        with torch.no_grad():
            f0 = Enc(x)
        m.Enc.passes = 0
        t0 = time.time()
        res = craft_batch(x, f0, m, cfg, gen)
        if res is None:
            return False
        log = res['log']
        log.update(batch=k, n=len(b), wall_s=round(time.time() - t0, 2),
                   s_per_outer_step=round((time.time() - t0) / max(1, cfg.outer_steps), 4),
                   encg_passes_per_step=round(m.Enc.passes / max(1, cfg.outer_steps), 2),
                   crafted_by=dist.owner())
        with torch.no_grad():
            prior = G(torch.randn(len(b), G.latent_dim, generator=gen).to(device))
        # eps-PII from the attacker's side: the same amortized attack on crafted and raw features
        res['recon'] = attacker_view(Enc, G, Amor, res['F'], cfg)
        res['recon_raw'] = attacker_view(Enc, G, Amor, f0, cfg)
        log['eps_pii'] = eps_pii(res['recon'], prior, cfg, device, seed)
        log['eps_pii_raw'] = eps_pii(res['recon_raw'], prior, cfg, device, seed)
        dist.say(f"batch {k}: eps-PII {log['eps_pii_raw']:.4g} -> {log['eps_pii']:.4g}, "
                 f"L_u {log['L_u']:.4g}, {log['wall_s']} s ({log['s_per_outer_step']} s/step, "
                 f"{log['encg_passes_per_step']} Enc(G) passes + {log.get('hvp_per_step', 0)} HVPs per step)")
        io.save_torch({'features': res['F'].detach().cpu(), 'names': [split.names[i] for i in b.tolist()],
                       'z_star': res['z_star'].detach().cpu(), 'log': log,
                       'provenance': ckpt.output_provenance(out)}, file)    # what made it
        if k == 0:
            plots.save_rows([x[:16].cpu(), res['recon_raw'][:16].cpu(), res['recon'][:16].cpu()],
                            out / f'grid_{cfg.split}.png')
            curves = {k2: v for k2, v in log['history'].items() if k2 in ('eps_running', 'L_u', 'L_p')}
            plots.save_curves(curves, out / f'curves_{cfg.split}.png',
                              f'{protection} (batch 0): privacy and utility per outer step', 'outer step')
        return True

    failed, pending, first = [], dist.shard_order(len(batches), dist.rank(), dist.world()), True
    while pending:
        held = []
        for k in pending:
            file = batch_file(out, cfg.split, k)
            if file.exists():
                if first:
                    dist.say(f'batch {k}: done before, skipped')
                continue
            got = dist.claim(file.with_suffix('.claim'), timeout)
            if got == 'held':
                held.append(k)
                continue
            if got.previous:
                dist.say(f'batch {k}: taking over from {got.previous} ({got.reason})')
            try:
                # a diverged batch is released too: another worker repeats the same divergence
                # (deterministic) and stops with the same error, as this one does
                if not file.exists() and not craft(k, batches[k], file):
                    failed.append(k)
            finally:
                got.release()       # done, failed or interrupted: free the batch at once
        if held and first:
            dist.say(f'waiting for batches {held} held by other processes')
        first, pending = False, held
        if held:
            time.sleep(POLL_S)

    rows = [torch.load(batch_file(out, cfg.split, k), weights_only=True)['log']
            for k in range(len(batches)) if batch_file(out, cfg.split, k).exists()]
    lost = [k for k in range(len(batches)) if not batch_file(out, cfg.split, k).exists()]
    summary = summarize(rows)
    summary.update(failed_batches=lost, protection=protection, split=cfg.split)
    lock = dist.claim(out / f'.merge_{cfg.split}.claim', timeout)
    if lock == 'held':
        print('another process is writing the merged features', flush=True)
    else:
        try:
            merge(out, cfg.split, len(batches))
            io.write_text(out / f'report_{cfg.split}.json', json.dumps({'summary': summary, 'batches': [
                {k: v for k, v in r.items() if k != 'history'} for r in rows]}, indent=1) + '\n')
        finally:
            lock.release()
    clock.finish(title, **{k: v for k, v in summary.items() if not isinstance(v, (list, dict))})
    if failed:
        raise SystemExit(f'error: batches {failed} diverged (see messages above); their features '
                         'were not written. Lower --lr or raise --beta, then rerun (finished '
                         'batches are kept).')
    return summary


CLAIM_TIMEOUT_S = 600.0   # a claim from another host this old is taken over (> a batch's time)
POLL_S = 0.5              # how often a worker with nothing left to claim looks at others' claims


def batch_file(out, split, k):
    return out / 'batches' / f'{split}_{k:04d}.pt'


def merge(out, split, n_batches):
    """features_<split>.pt: every finished batch in order; rewritten only when a batch is newer
    (so of several workers finishing together, the features are written once)."""
    files = [batch_file(out, split, k) for k in range(n_batches)]
    files = [f for f in files if f.exists()]
    target = out / f'features_{split}.pt'
    if not files or (target.exists() and
                     target.stat().st_mtime >= max(f.stat().st_mtime for f in files)):
        return
    feats, names = [], []
    for file in files:
        obj = torch.load(file, weights_only=True)
        feats.append(obj['features'])
        names += obj['names']
    ckpt.save_features(target, torch.cat(feats), names,
                       protection=out.name, split=split, complete=len(feats) == n_batches)


def summarize(rows):
    keys = ('eps_pii', 'eps_pii_raw', 'L_u', 'L_id', 'wall_s', 's_per_outer_step', 'encg_passes_per_step',
            'hvp_per_step')
    out = {}
    for k in keys:
        vals = [r[k] for r in rows if k in r and r[k] is not None and math.isfinite(r[k])]
        if vals:
            out[k] = sum(vals) / len(vals)
    out['batches'] = len(rows)
    return out


def run_provenance(cfg):
    """What a crafting run's batches depend on besides RESULT_KEYS: the ids of the checkpoints
    it read (enc.pt, gan.pt, amor.pt), the dataset's fingerprint and content digest, and the
    resolved attack_steps."""
    prov = ckpt.provenance(cfg)
    prov['attack_steps'] = attack_steps(cfg)
    return prov


def _check_same_run(cfg, out):
    """Refuse to add to (or skip into) a run folder made with other settings, checkpoints or
    data; config_<split>.json is written when the folder is new and never rewritten to claim
    other values than the batches were made with."""
    saved = out / f'config_{cfg.split}.json'
    prov = run_provenance(cfg)
    redo = (f'Give this run its own --run NAME, or delete that folder to redo it '
            f'(rm -r {io.rel(out)})')
    if saved.exists():
        old = json.loads(saved.read_text())
        diff = [(k, old[k], cfg[k]) for k in RESULT_KEYS if k in cfg and k in old and old[k] != cfg[k]]
        before = old.get('provenance')
        if isinstance(before, dict):
            diff += ckpt.provenance_diff(before, prov)
            if before.get('attack_steps') not in (None, prov['attack_steps']) \
                    and not any(k == 'attack_steps' for k, _, _ in diff):
                diff.append(('attack_steps (resolved)', before['attack_steps'], prov['attack_steps']))
        if diff:
            raise ckpt.CheckpointError(
                f'{io.rel(out)} holds a run with other settings or inputs: '
                + ', '.join(f'{k}: {a!r} there, {b!r} now' for k, a, b in diff)
                + '; its finished batches would be released as this run\'s. ' + redo + '.')
        if isinstance(before, dict):
            ckpt.register_output(out, before)
            return
        # made before provenance was recorded: assumed to come from these checkpoints and data
        print(f'note: {io.rel(out)} records no checkpoint ids (an older run); its batches are '
              f'taken as made from the current {", ".join(prov["inputs"]) or "checkpoints"}', flush=True)
        io.write_text(saved, json.dumps({**old, 'provenance': prov}, indent=1, sort_keys=True) + '\n')
    else:
        made = sorted((out / 'batches').glob(f'{cfg.split}_*.pt')) if (out / 'batches').is_dir() else []
        if made:
            raise ckpt.CheckpointError(
                f'{io.rel(out)} holds {len(made)} crafted {cfg.split} batches but no '
                f'config_{cfg.split}.json saying what made them. ' + redo + '.')
        io.write_text(saved, json.dumps({**cfg, 'provenance': prov}, indent=1, sort_keys=True) + '\n')
    ckpt.register_output(out, prov)


def check_finite(step, **values):
    """The message for a NaN or exploding loss (None when all is well)."""
    for k, v in values.items():
        if not math.isfinite(v) or abs(v) > 1e6:
            return f'{k} = {v} at outer step {step}'
    return None
