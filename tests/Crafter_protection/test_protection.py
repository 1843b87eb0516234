"""Crafter protects: on a small world where the truth is known, the crafted features move the
attacker's reconstructions toward the prior and away from the originals, and beta trades that
against L_u. These tests run Algorithm 1 exactly as shipped (featureCrafter.craft_batch with its
default solver: warm start, CG with the shipped damping) and fail when it stops protecting
(tests/mutation_check.py applies five such mutations).

The world: a linear generator G (z -> A z, 3 x 8 x 8 images), a linear Enc (M = Enc A has a
chosen spectrum), features f0 = M z + a unit residual orthogonal to range(M) (so L_inv's
Hessian at z_star is M^T M / ||r|| = M^T M, well above the shipped damping), private latents drawn
around a mean 2.5 away from the prior N(0, I), and an exact amortizer (least squares). The
reconstructions are judged by a critic the test trains itself (common/wgan.py, prior faces as
the real side), so a wrong critic inside Crafter cannot also bend the measurement.
"""
from types import SimpleNamespace

import torch

from common import config, wgan
from Crafter_protection import crafting, featureCrafter
from models import Critic

K, S, NF, N = 8, 8, 32, 32          # latent size, image size, feature size, images


class LinearWorld:
    def __init__(self, seed=0, lam_lo=50.0, lam_hi=200.0, shift=2.5):
        g = torch.Generator().manual_seed(seed)
        P = 3 * S * S
        U, _ = torch.linalg.qr(torch.randn(NF, K, generator=g))
        V, _ = torch.linalg.qr(torch.randn(K, K, generator=g))
        M = U @ torch.diag(torch.linspace(lam_lo, lam_hi, K).sqrt()) @ V.T
        A = torch.randn(P, K, generator=g) / P ** 0.5 * 4
        B = M @ torch.linalg.pinv(A)
        self.G = torch.nn.Sequential(torch.nn.Linear(K, P, bias=False), torch.nn.Unflatten(1, (3, S, S)))
        self.Enc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(P, NF, bias=False))
        self.Amor = torch.nn.Linear(NF, K, bias=False)
        with torch.no_grad():
            self.G[0].weight.copy_(A)
            self.Enc[1].weight.copy_(B)
            self.Amor.weight.copy_(torch.linalg.pinv(M))      # the exact inverse: z_star(F)
        for net in (self.G, self.Enc, self.Amor):
            for p in net.parameters():
                p.requires_grad_(False)
        self.G.latent_dim = K
        direction = torch.randn(K, generator=g)
        self.z = shift * direction / direction.norm() + 0.5 * torch.randn(N, K, generator=g)
        P_perp = torch.eye(NF) - U @ U.T
        r = torch.randn(N, NF, generator=g) @ P_perp
        self.x = self.G(self.z)
        self.f0 = self.z @ M.T + r / r.norm(dim=1, keepdim=True)

    def models(self):
        return SimpleNamespace(Enc=self.Enc, G=self.G, Amor=self.Amor, img_size=S, Id=None)


SOLVER = ('inner_start', 'inner_steps', 'inner_lr', 'inner_momentum', 'hypergrad', 'cg_iters',
          'cg_damping', 'neumann_alpha', 'neumann_terms')


def crafter_cfg(**over):
    """The shipped solver (HP defaults, not the tiny preset's) with the tiny preset's critic and a
    step size for this world."""
    hp = {**featureCrafter.HP, **featureCrafter.PRESETS['tiny'], 'preset': 'tiny',
          'outer_steps': 30, 'lr': 0.1, 'n_critic': 5, 'critic_width': 8}
    hp.update({k: featureCrafter.HP[k] for k in SOLVER})
    return config.Config({**hp, **over})


def craft(world, seed, **over):
    cfg = crafter_cfg(**over)
    torch.manual_seed(seed)
    res = featureCrafter.craft_batch(world.x, world.f0, world.models(), cfg,
                                     torch.Generator().manual_seed(seed))
    assert res is not None
    return res, cfg


def distance_to_prior(world, recon, seed, steps=150):
    """A fresh critic's Wasserstein estimate between reconstructions and prior faces."""
    g = torch.Generator().manual_seed(1000 + seed)
    torch.manual_seed(1000 + seed)
    prior = world.G(torch.randn(256, K, generator=g))
    D = Critic(S, 16)
    opt = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.999))
    w = 0.0
    for _ in range(steps):
        i = torch.randint(len(prior), (len(recon),), generator=g)
        w, _ = wgan.critic_step(D, opt, prior[i], recon, 10.0)
    with torch.no_grad():
        return (D(prior).mean() - D(recon).mean()).item()


def test_crafted_features_move_reconstructions_toward_the_prior():
    world = LinearWorld()
    raw_recon = crafting.attacker_view(world.Enc, world.G, world.Amor, world.f0, crafter_cfg())
    raw_err = (raw_recon - world.x).pow(2).mean().item()
    for seed in range(2):
        res, cfg = craft(world, seed, beta=0.01)
        recon = crafting.attacker_view(world.Enc, world.G, world.Amor, res['F'], cfg)
        w_raw = distance_to_prior(world, raw_recon, seed)
        w_crafted = distance_to_prior(world, recon, seed)
        err = (recon - world.x).pow(2).mean().item()
        # the attacker's reconstructions of crafted features look more like prior faces ...
        assert w_crafted < 0.85 * w_raw, (seed, w_raw, w_crafted)
        # ... and less like the originals
        assert err > 2 * raw_err + 1e-3, (seed, raw_err, err)


def test_utility_loss_falls_as_beta_rises():
    world = LinearWorld(seed=1)
    L_u = [craft(world, 0, beta=b)[0]['log']['L_u'] for b in (0.01, 1.0, 100.0)]
    assert L_u[0] > 1e-3, L_u                      # privacy moves F at all
    assert L_u[0] > 1.5 * L_u[1] > 2.25 * L_u[2], L_u


def test_shipped_hypergradient_agrees_with_finite_differences():
    """One outer step's dL/dF (featureCrafter.outer_gradient with the shipped cg_iters and
    damping) against central differences of L(F) = -mean D(G(z_star(F))) + beta L_u(F), z_star
    re-solved exactly (least squares) at every perturbed F; D is a fixed random critic. The
    implicit term carries nearly all of dL/dF here, so zeroing or flipping it fails the test."""
    world = LinearWorld(seed=2)
    for net in (world.G, world.Enc, world.Amor):
        net.double()
    n = 8
    g = torch.Generator().manual_seed(0)
    f0 = world.f0[:n].double()
    F = (f0 + 0.05 * torch.randn(f0.shape, generator=g, dtype=torch.float64)).requires_grad_(True)
    torch.manual_seed(0)
    critic = SimpleNamespace(D=Critic(S, 8).double())
    for p in critic.D.parameters():
        p.requires_grad_(False)
    critic.privacy_loss = lambda recon: -critic.D(recon).mean()
    cfg = crafter_cfg(beta=0.1)

    def z_star(Fx):                       # the inner problem solved to convergence
        return world.Amor(Fx)

    def outer_per_image(Fx):            # L = sum of these: -D(G(z_star_i)) / n + beta L_u,i / n
        with torch.no_grad():
            return (-critic.D(world.G(z_star(Fx)))
                    + cfg.beta * (Fx - f0).pow(2).flatten(1).mean(1)) / n

    grad, _, _, _, n_hvp = featureCrafter.outer_gradient(
        critic, world.Enc, world.G, F, f0, z_star(F.detach()), cfg, featureCrafter.solver_damping(cfg))
    assert n_hvp <= cfg.cg_iters
    # L is a sum of per-image terms (instance norm, per-image z_star), so perturbing one feature
    # coordinate of every image at once gives each image's partial derivative
    fd = torch.zeros_like(f0)
    h = 1e-5
    for j in range(NF):
        e = torch.zeros_like(f0)
        e[:, j] = h
        fd[:, j] = (outer_per_image(F.detach() + e) - outer_per_image(F.detach() - e)) / (2 * h)
    cos = torch.nn.functional.cosine_similarity(grad.flatten(), fd.flatten(), dim=0).item()
    assert cos > 0.9, cos
    # and the implicit term is what carries it: the direct part alone points elsewhere
    direct = 2 * cfg.beta * (F.detach() - f0) / NF / n
    assert torch.nn.functional.cosine_similarity(direct.flatten(), fd.flatten(), dim=0).item() < 0.5


def test_restart_every_step_is_the_papers_amortized_inner_start():
    """restart_every=1 re-solves from Amor(F) every step: the same F as inner_start='amortized'
    with first_inner_steps inner steps (fails if the restart is ignored or starts elsewhere)."""
    world = LinearWorld()
    over = dict(beta=0.01, outer_steps=6, first_inner_steps=7)
    restarted, _ = craft(world, 0, restart_every=1, **over)
    amortized, _ = craft(world, 0, inner_start='amortized', inner_steps=7, **over)
    warm, _ = craft(world, 0, **over)
    assert torch.equal(restarted['F'], amortized['F'])
    assert not torch.allclose(restarted['F'], warm['F'])
