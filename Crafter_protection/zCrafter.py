"""Step 12: z-Crafter (paper, Algorithm 3): craft in the latent space instead of the feature space.

Start from the attacker's inversion z_star(Enc(x)) and optimise z directly with Adam against a
fresh critic (prior faces G(z_r) as in Crafter), keeping the feature close:
    L = -mean D(G(z)) + beta * ||Enc(G(z)) - f0||^2 / d,
then release F = Enc(G(z)). Faster than Crafter (no bilevel problem) but weaker: the latent
learning rate sets its trade-off more than beta does (paper, Table XIV).
Same outputs and resumability as featureCrafter.py (see Crafter_protection/crafting.py); its
eps-PII comes from the same attacker as Crafter's, who starts at Amor(F), not at the secret z.

    python Crafter_protection/zCrafter.py --preset demo --beta 1
"""

import torch

from common import config
from Crafter_protection import crafting
from Crafter_protection.featureCrafter import HP as CRAFTER_HP
from WhiteBoxAttack.attacker import invert

PROTECTION = dict(prefix='zcrafter_beta', knob='beta', label='z-Crafter (beta)', style='s:',
                  own_encoder=False, randomised=False, order=20, needs=['amor'],
                  points={'tiny': [1], 'demo': [1], 'celeba-cpu': [1], 'paper': [1]},
                  full={'tiny': [1], 'celeba-cpu': [1], 'paper': [1]},   # demo: eval_test only (keeps make demo short)
                  make='Crafter_protection/zCrafter.py --beta {value} --split {split}')

# ---- hyperparameters (paper defaults; override with --name value or --preset NAME) ----
HP = dict(
    {k: v for k, v in CRAFTER_HP.items()                   # the critic, batch, inner-attacker
     if k not in ('inner_start', 'hypergrad', 'neumann_alpha', 'neumann_terms', 'cg_iters',
                  'cg_damping')},                          # and output settings are Crafter's
    lr=0.005,            # Adam on z (paper: 0.005; Table XIV also 1e-4 ... 1e-3)
    run='',              # run folder name (default zcrafter_beta<beta>)
)
# what needs more than "finite and >= 0" (common/config.py): counts, learning rates, fractions
RANGES = dict(outer_steps='>=1', batch_size='>=1', lr='>0', critic_lr='>0', n_critic='>=1',
              critic_batch='>=1', critic_width='>=1', inner_steps='>=1', inner_lr='>0',
              inner_momentum='[0,1)', eps_steps='>=1', claim_timeout_s='>0')
PRESETS = {
    'tiny': dict(outer_steps=3, batch_size=16, n_critic=2, critic_width=8, first_inner_steps=3,
                 n_per_id=1, n_images=16, eps_steps=5),
    'demo': dict(outer_steps=40, batch_size=128, critic_width=16, n_per_id=1, eps_steps=100),
    'celeba-cpu': dict(outer_steps=80, batch_size=128, critic_width=32, n_per_id=2, eps_steps=100),
}
# -----------------------------------------------------------------------------------------


def craft_batch(x, f0, m, cfg, gen):
    """Algorithm 3 on one batch (same return value as featureCrafter.craft_batch)."""
    Enc, G = m.Enc, m.G
    critic = crafting.PrivacyCritic(m.img_size, cfg, x.device, gen)
    with torch.no_grad():
        prior = G(torch.randn(len(x), G.latent_dim, generator=gen).to(x.device))
        z0 = m.Amor(f0)
    z_raw, _ = invert(Enc, G, f0, z0, cfg.first_inner_steps, cfg.inner_lr, cfg.inner_momentum)
    z = z_raw.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=cfg.lr)
    hist = {'eps_running': [], 'L_p': [], 'L_u': []}
    for step in range(cfg.outer_steps):
        img = G(z)
        w, _ = critic.update(img.detach(), prior)
        L_p = critic.privacy_loss(img)
        L_u = (Enc(img) - f0).pow(2).flatten(1).mean(1).mean()
        loss = L_p + cfg.beta * L_u
        problem = crafting.check_finite(step, L_p=L_p.item(), L_u=L_u.item())
        if problem:
            print(f'stopped this batch: {problem}; its features are not written')
            return None
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for k, v in (('eps_running', w), ('L_p', L_p.item()), ('L_u', L_u.item())):
            hist[k].append(v)
    with torch.no_grad():
        F = Enc(G(z))
        L_u = (F - f0).pow(2).flatten(1).mean(1).mean().item()
    log = {'L_u': L_u, 'eps_running_last': hist['eps_running'][-1] if hist['eps_running'] else None,
           'history': hist}
    # the secret z stays here: the attacker (crafting.run) starts from Amor(F), as for Crafter
    return {'F': F, 'z_star': z.detach(), 'log': log}


def main(argv=None):
    cfg = config.parse(HP, PRESETS, argv, ranges=RANGES, description=__doc__)
    return crafting.run(cfg, f'zcrafter_beta{cfg.beta:g}', craft_batch, 'zCrafter')


if __name__ == '__main__':
    main()
