"""The implicit hypergradient of Crafter (paper, Appendix C).

With z_star(F) = argmin_z L_inv(F, z) and H = d2 L_inv / dz2 at z_star, the implicit function
theorem gives dz_star/dF = -H^-1 d2 L_inv / dz dF, hence for an outer loss L(F, z_star(F)):

    dL/dF = dL/dF|_direct - (d2 L_inv / dz dF)^T H^-1 dL/dz

H^-1 v is approximated with Hessian-vector products only, either by the paper's truncated
Neumann series  alpha * sum_{j=0..i} (I - alpha H)^j v  (alpha = 0.001, i = 120), or by conjugate
gradient on (H + mu I) x = v (our addition: a handful of products). Every image's inner problem
is independent (the inner loss is a sum over images, H is block diagonal), so CG runs per image:
its scalars are per-row dot products over the latent dimension.

Both are filters of H^-1. With the attacker's loss ||Enc(G(z)) - F||_2, H at z_star on the demo
checkpoints has eigenvalues with median 0.15-0.23, mean 2-5, top 78-215 and smallest ~0.003, so
the exact solve needs ~64 CG iterations; the Neumann series (damping 1/(alpha 121) = 8.26 in
effect) reaches cosine 0.31-0.39 to it, 8 CG iterations at damping 0.1 reach 0.57-0.66 (the
damping hardly matters between 0 and 0.3; iterations do). Adam on F normalises the scale.
"""
import torch


def neumann(hvp, v, alpha=1e-3, terms=120):
    """alpha * sum_{j=0..terms} (I - alpha H)^j v; returns (approximation, #HVPs)."""
    p, acc = v.clone(), v.clone()
    for _ in range(terms):
        p = p - alpha * hvp(p)
        acc = acc + p
    return alpha * acc, terms


def conjugate_gradient(hvp, v, iters=8, damping=0.0, tol=1e-6):
    """Solve (H + damping I) x = v row by row (each row one image's latent); returns (x, #HVPs).

    A row whose curvature along the search direction is not positive (z_star not yet a minimum)
    or whose residual is below tol stops updating: truncated CG keeps the last good iterate.
    """
    x = torch.zeros_like(v)
    r = v.clone()
    p = r.clone()
    rs = (r * r).sum(1, keepdim=True)
    stop = rs.sqrt() <= tol * v.norm(dim=1, keepdim=True).clamp_min(1e-30)
    n = 0
    for _ in range(iters):
        if bool(stop.all()):
            break
        Ap = hvp(p) + damping * p
        n += 1
        pAp = (p * Ap).sum(1, keepdim=True)
        stop = stop | (pAp <= 0)
        a = torch.where(stop, torch.zeros_like(rs), rs / pAp.clamp_min(1e-30))
        x = x + a * p
        r = r - a * Ap
        rs_new = (r * r).sum(1, keepdim=True)
        stop = stop | (rs_new.sqrt() <= tol * v.norm(dim=1, keepdim=True))
        p = r + torch.where(stop, torch.zeros_like(rs), rs_new / rs.clamp_min(1e-30)) * p
        rs = rs_new
    return x, n


def neumann_damping(alpha, terms):
    """The damping that makes CG's (H + mu I)^-1 match the truncated Neumann series' filter.

    Truncated after `terms`, the series acts on an eigenvalue lam as (1 - (1 - alpha lam)^(terms+1)) / lam:
    1/lam for large lam and alpha (terms + 1) for small lam, i.e. about 1 / (lam + mu) with
    mu = 1 / (alpha (terms + 1)) (8.26 for the paper's alpha and terms). featureCrafter's
    --cg_damping -1 uses it, so that CG weighs privacy against utility as the series does.
    """
    return 1.0 / (alpha * (terms + 1))


def hypergradient(inner_loss, z_star, F, dL_dz, dL_dF, method='cg', cg_iters=8, cg_damping=0.0,
                  alpha=1e-3, terms=120):
    """dL/dF by the implicit function theorem; returns (gradient, #Hessian-vector products).

    inner_loss(z, F): scalar, the sum over images of L_inv; z_star: N x d inner solution;
    dL_dz: N x d outer gradient w.r.t. z_star; dL_dF: outer gradient w.r.t. F held fixed.
    """
    z = z_star.detach().requires_grad_(True)
    Fv = F.detach().requires_grad_(True)
    g_z, = torch.autograd.grad(inner_loss(z, Fv), z, create_graph=True)

    def hvp(u):
        return torch.autograd.grad(g_z, z, grad_outputs=u, retain_graph=True)[0]

    if method == 'neumann':
        v, n = neumann(hvp, dL_dz, alpha, terms)
    elif method == 'cg':
        v, n = conjugate_gradient(hvp, dL_dz, cg_iters, cg_damping)
    else:
        raise ValueError(f"hypergradient method must be 'cg' or 'neumann', got {method!r}")
    cross, = torch.autograd.grad(g_z, Fv, grad_outputs=v)      # (d2 L_inv / dF dz) v
    return dL_dF - cross, n
