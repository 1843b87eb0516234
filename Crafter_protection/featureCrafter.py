"""Step 11: Crafter (paper, Algorithm 1): craft the released feature F of each private image.

For each batch of private images x:  f0 = Enc(x); a fresh WGAN critic D; fixed prior latents
z_r; F = f0. Then, for every outer step:
  1. inner problem, the simulated white-box attacker:  z_star = argmin_z L_inv(F, z) with the
     attacker's own loss L_inv = ||Enc(G(z)) - F||_2 (the norm, not the square: see
     WhiteBoxAttack/attacker.py; at a converged z_star both give the same z_star and the same
     dz_star/dF), started at Amor(F) as the paper or warm-started at the previous step's z_star;
  2. n_critic updates of D separating G(z_star) from the prior faces G(z_r);
  3. outer loss  L = L_p + beta * L_u + gamma * L_id,  L_p = -mean D(G(z_star)),
     L_u = ||F - f0||^2 / d,  L_id = mean cos(Id(F), Id(f0)) (ours, off at gamma = 0: the
     paper's Crafter), Id the defender's identity embedding of features, trained on PUBLIC
     identities only (Feature2ID/f2id_train.py --split public); Crafter_protection/idCrafter.py
     runs it as its own protection;
  4. hypergradient dL/dF by the implicit function theorem (Crafter_protection/implicit.py),
     H^-1 v by the paper's Neumann series or by damped conjugate gradient;
  5. an Adam step on F.
The defaults are the paper's except the solver of steps 1 and 4: warm start with a few inner
steps, and 8 CG iterations with damping 0.1. REFERENCE below restores the paper's solver;
benchmarks/crafting.py compares the two. eps-PII is measured from the attacker's side
(crafting.attacker_view). Outputs: see Crafter_protection/crafting.py.

Why these settings: docs/DESIGN.md

    python Crafter_protection/featureCrafter.py --preset demo --beta 1
"""

import torch

from common import config
from Crafter_protection import crafting, implicit
from WhiteBoxAttack.attacker import invert

PROTECTION = dict(prefix='crafter_beta', knob='beta', label='Crafter (beta)', style='o-',
                  own_encoder=False, randomised=False, order=10, needs=['amor'],
                  # knob values the Makefile runs (eval_test); full: also the public queries, the
                  # eval_train release and every adaptive attack (the first is the recommended beta)
                  points={'tiny': [0.01, 1], 'demo': [0.01, 1], 'celeba-cpu': [0.01, 0.1, 0.3],
                          'paper': [0.5, 1, 2, 10]},
                  full={'tiny': [0.01], 'demo': [0.01], 'celeba-cpu': [0.3], 'paper': [1]},
                  make='Crafter_protection/featureCrafter.py --beta {value} --split {split}')

# ---- hyperparameters (paper defaults; override with --name value or --preset NAME) ----
HP = dict(
    beta=1.0,            # utility weight; paper: 0.5, 1, 2, 10 (larger = more utility)
    gamma=0.0,           # identity weight (ours): L_id, F's public-identity embedding against f0's;
                         # 0 = the paper's Crafter; > 0 needs params/f2id_public.pt, run crafterid_beta<beta>
    outer_steps=450,     # paper: 450
    batch_size=128,      # paper: 128
    lr=0.01,             # Adam on F (paper: 0.01)
    critic_lr=5e-4,      # fresh critic per batch: Adam 5e-4, 10 steps on mini-batches of 32
    n_critic=10,
    critic_batch=32,
    gp=20.0,             # gradient penalty 20, raised to 40 while the penalty exceeds 1
    gp_high=40.0,
    critic_width=64,
    inner_start='warm',  # warm (previous z_star; ours) | amortized (Amor(F) each step; paper)
    inner_steps=5,       # inner momentum-descent steps per outer step (paper: 80 from Amor(F))
    first_inner_steps=80,  # steps of the very first inner solve from Amor(f0)
    restart_every=0,     # k > 0: every k outer steps (step 0 included) the inner solve restarts
                         # at Amor(F) for first_inner_steps, the amortized attacker's own view,
                         # instead of following the warm track (issue 17's lever; 0 = off)
    inner_lr=5e-3,       # as the white-box attacker (lr 5e-3, momentum 0.9)
    inner_momentum=0.9,
    hypergrad='cg',      # cg (ours) | neumann (paper)
    neumann_alpha=1e-3,  # paper: alpha 0.001, 120 terms
    neumann_terms=120,
    cg_iters=8,          # CG on (H + cg_damping I) x = dL/dz_star, per image; measured against the
    cg_damping=0.1,      # exact H^-1 on demo (README): cosine 0.57-0.66 at 8 iterations, damping
                         # 0.03-0.3 alike; 4 iterations 0.37-0.46; the Neumann series 0.31-0.39.
                         # -1: the series' own damping 1 / (alpha (terms + 1)) = 8.26 (cos 0.30-0.39)
    split='eval_test',   # the private images to protect (eval_train for the training scenario;
    n_per_id=0,          # public for the adaptive attacks); images per identity, 0 = all
    n_images=0,          # cap on the number of images (0 = all)
    eps_steps=200,       # critic steps of the final eps-PII estimate
    attack_steps=0,      # amortized attack iterations behind eps-PII (0 = attacker.py's preset)
    run='',              # run folder name (default crafter_beta<beta>)
    claim_timeout_s=600.0,  # sharded crafting: another host's batch claim older than this is
                            #   taken over (a dead owner on this host at once)
)
# what needs more than "finite and >= 0" (common/config.py): counts, learning rates, fractions
RANGES = dict(outer_steps='>=1', batch_size='>=1', lr='>0', critic_lr='>0', n_critic='>=1',
              critic_batch='>=1', critic_width='>=1', inner_steps='>=1', inner_lr='>0',
              inner_momentum='[0,1)', neumann_alpha='>0', neumann_terms='>=1', cg_iters='>=1',
              cg_damping='>=0 or -1', eps_steps='>=1', claim_timeout_s='>0')
# the paper's solver (Amor(F) start, 80 inner steps, Neumann alpha 0.001 x 120 terms), for the
# reference side of benchmarks/crafting.py; like ours it solves the attacker's inner loss
# ||Enc(G(z)) - F||_2 (the norm: WhiteBoxAttack/attacker.py says why not the paper's ||.||^2 / d)
REFERENCE = dict(inner_start='amortized', inner_steps=80, hypergrad='neumann')
PRESETS = {
    'tiny': dict(outer_steps=3, batch_size=16, n_critic=2, critic_width=8, inner_steps=2,
                 first_inner_steps=3, cg_iters=2, n_per_id=1, n_images=16, eps_steps=5,
                 neumann_terms=5),
    'demo': dict(outer_steps=40, lr=0.1, batch_size=128, critic_width=16, n_per_id=1,
                 eps_steps=100),
    'celeba-cpu': dict(outer_steps=80, lr=0.07, batch_size=128, critic_width=32, n_per_id=2,
                       eps_steps=100),
}
# -----------------------------------------------------------------------------------------


def identity_loss(Id, F, f0):
    """L_id: mean cosine of the defender's identity embeddings of F and f0 (1: F still reads as
    the same person to a model of public identities; lower: less of f0's identity is left)."""
    with torch.no_grad():
        e0 = Id(f0)
    return torch.nn.functional.cosine_similarity(Id(F), e0, dim=1).mean()


def outer_gradient(critic, Enc, G, F, f0, z_star, cfg, damping, recon=None, Id=None):
    """Steps 3-4 of one outer step: the outer loss L = L_p + beta L_u + gamma L_id at z_star(F)
    and its hypergradient dL/dF; returns (dL/dF, L_p, L_u, L_id or None, #Hessian-vector products).
    recon: G(z_star) already computed with z_star requiring grad (saves a pass)."""
    if recon is None:
        z_star = z_star.detach().requires_grad_(True)
        recon = G(z_star)
    L_p = critic.privacy_loss(recon)
    L_u = (F - f0).pow(2).flatten(1).mean(1).mean()
    L_id = identity_loss(Id, F, f0) if cfg.gamma > 0 else None
    dL_dz, = torch.autograd.grad(L_p, z_star)
    # L_u and L_id read F directly: their gradient joins the implicit one through z_star(F)
    dL_dF, = torch.autograd.grad(cfg.beta * L_u + (cfg.gamma * L_id if L_id is not None else 0), F)
    grad_F, n = implicit.hypergradient(crafting.inner_loss(Enc, G), z_star, F, dL_dz, dL_dF,
                                       cfg.hypergrad, cfg.cg_iters, damping,
                                       cfg.neumann_alpha, cfg.neumann_terms)
    return grad_F, L_p, L_u, L_id, n


def solver_damping(cfg):
    """The CG damping: cfg.cg_damping, or the Neumann series' implicit one when it is < 0."""
    return (implicit.neumann_damping(cfg.neumann_alpha, cfg.neumann_terms)
            if cfg.cg_damping < 0 else cfg.cg_damping)


def craft_batch(x, f0, m, cfg, gen, on_step=None):
    """Algorithm 1 on one batch. Returns the crafted F, the crafter's last z_star and a log, or
    None when the loss turns NaN or explodes (the batch is then not written). The attacker's
    reconstructions (eps-PII) are computed by crafting.run from F alone.
    on_step(step, F): called after every outer step (the benchmark snapshots F there)."""
    Enc, G, Amor = m.Enc, m.G, m.Amor
    critic = crafting.PrivacyCritic(m.img_size, cfg, x.device, gen)
    with torch.no_grad():
        prior = G(torch.randn(len(x), G.latent_dim, generator=gen).to(x.device))   # G(z_r), fixed
        z_star = Amor(f0)
    z_star, _ = invert(Enc, G, f0, z_star, cfg.first_inner_steps, cfg.inner_lr, cfg.inner_momentum)
    F = f0.clone().requires_grad_(True)
    opt = torch.optim.Adam([F], lr=cfg.lr)
    damping = solver_damping(cfg)
    hist = {'eps_running': [], 'L_p': [], 'L_u': [], 'L_id': [], 'gp': []}
    n_hvp = 0
    for step in range(cfg.outer_steps):
        # 1. inner problem: the simulated attacker's inversion of the current F
        restart = cfg.restart_every > 0 and step % cfg.restart_every == 0
        with torch.no_grad():
            z0 = Amor(F) if cfg.inner_start == 'amortized' or restart else z_star
        z_star, _ = invert(Enc, G, F.detach(), z0,
                           cfg.first_inner_steps if restart else cfg.inner_steps, cfg.inner_lr,
                           cfg.inner_momentum)
        # 2. critic updates: reconstructions against prior faces
        z_star.requires_grad_(True)
        recon = G(z_star)
        w, gp = critic.update(recon.detach(), prior)
        # 3-4. outer loss and its implicit hypergradient through z_star(F)
        grad_F, L_p, L_u, L_id, n = outer_gradient(critic, Enc, G, F, f0, z_star, cfg, damping, recon, m.Id)
        n_hvp += n
        # 5. Adam step on F
        problem = crafting.check_finite(step, L_p=L_p.item(), L_u=L_u.item(),
                                        grad=grad_F.norm().item())
        if problem:
            print(f'stopped this batch: {problem}; its features are not written')
            return None
        opt.zero_grad(set_to_none=True)
        F.grad = grad_F
        opt.step()
        for k, v in (('eps_running', w), ('L_p', L_p.item()), ('L_u', L_u.item()), ('gp', gp),
                     ('L_id', None if L_id is None else L_id.item())):
            hist[k].append(v)
        if on_step is not None:
            on_step(step + 1, F.detach())
    with torch.no_grad():
        L_u = (F - f0).pow(2).flatten(1).mean(1).mean().item()
        L_id = identity_loss(m.Id, F, f0).item() if cfg.gamma > 0 else None
    log = {'L_u': L_u, 'L_id': L_id, 'eps_running_last': hist['eps_running'][-1] if hist['eps_running'] else None,
           'hvp_per_step': n_hvp / max(1, cfg.outer_steps), 'history': hist}
    return {'F': F.detach(), 'z_star': z_star.detach(), 'log': log}


def main(argv=None, hp=HP):
    cfg = config.parse(hp, PRESETS, argv, ranges=RANGES, description=__doc__)
    for key, allowed in (('inner_start', ('warm', 'amortized')), ('hypergrad', ('cg', 'neumann')),
                         ('split', ('eval_test', 'eval_train', 'private', 'public'))):
        if cfg[key] not in allowed:
            raise config.ConfigError(f'--{key} {cfg[key]!r}: expected one of {", ".join(allowed)}')
    prefix = 'crafterid_beta' if cfg.gamma > 0 else 'crafter_beta'     # two families on the figure
    return crafting.run(cfg, f'{prefix}{cfg.beta:g}', craft_batch, 'featureCrafter')


if __name__ == '__main__':
    main()
