"""The implicit hypergradient against a problem with a closed-form inner solution.

Linear G (z -> A z) and linear Enc (y -> B y) make Enc(G(z)) = M z, so with the attacker's
inner loss L_inv = ||M z - F||_2 the solution is z*(F) = (M^T M)^-1 M^T F, and an outer loss
L = <c, z*(F)> + beta ||F - f0||^2 / n has the exact gradient M (M^T M)^-1 c + 2 beta (F - f0) / n.
At z*, H = M^T M / ||r|| (r = M z* - F is orthogonal to range(M)); we build F with ||r|| = 1 so
H = M^T M has the spectrum we choose. Float64 throughout, so tolerances reflect the solvers, not
rounding: CG in k steps is exact for a k-dimensional latent (tolerance 1e-8 relative); the
paper's Neumann series (alpha 1e-3, 120 terms) converges at rate (1 - alpha lambda)^121, which we
make < 1e-15 by giving H eigenvalues in [300, 1500].
"""
import pytest
import torch

from Crafter_protection import crafting, implicit

N, K, M_DIM, NF = 3, 6, 20, 16   # images, latent size, image size, feature size


def make_problem(seed=0, lam_lo=300.0, lam_hi=1500.0):
    g = torch.Generator().manual_seed(seed)
    # M = U diag(s) V^T with the singular values that put H = 2 M^T M / n where we want it
    U, _ = torch.linalg.qr(torch.randn(NF, K, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(K, K, generator=g, dtype=torch.float64))
    lam = torch.linspace(lam_lo, lam_hi, K, dtype=torch.float64)
    M = U @ torch.diag(lam.sqrt()) @ V.T
    A = torch.randn(M_DIM, K, generator=g, dtype=torch.float64)
    B = M @ torch.linalg.pinv(A)                      # B A = M
    G = torch.nn.Linear(K, M_DIM, bias=False).double()
    Enc = torch.nn.Linear(M_DIM, NF, bias=False).double()
    with torch.no_grad():
        G.weight.copy_(A)
        Enc.weight.copy_(B)
    for p in list(G.parameters()) + list(Enc.parameters()):
        p.requires_grad_(False)
    # F = M z + a unit residual orthogonal to range(M), so ||r|| = 1 at z*
    P_perp = torch.eye(NF, dtype=torch.float64) - U @ U.T
    r = torch.randn(N, NF, generator=g, dtype=torch.float64) @ P_perp
    F = torch.randn(N, K, generator=g, dtype=torch.float64) @ M.T + r / r.norm(dim=1, keepdim=True)
    f0 = torch.randn(N, NF, generator=g, dtype=torch.float64)
    c = torch.randn(N, K, generator=g, dtype=torch.float64)
    return G, Enc, M, F, f0, c


def z_star(M, F):
    return torch.linalg.solve(M.T @ M, M.T @ F.T).T


def analytic(M, F, f0, c, beta):
    return (M @ torch.linalg.solve(M.T @ M, c.T)).T + 2 * beta * (F - f0) / NF


def ours(G, Enc, M, F, f0, c, beta, method, **kw):
    dL_dF = 2 * beta * (F - f0) / NF
    grad, n = implicit.hypergradient(crafting.inner_loss(Enc, G), z_star(M, F), F, c, dL_dF,
                                     method, **kw)
    return grad, n


@pytest.mark.parametrize('method, kw', [('cg', dict(cg_iters=K)),
                                        ('neumann', dict(alpha=1e-3, terms=120))])
def test_hypergradient_matches_closed_form(method, kw):
    G, Enc, M, F, f0, c = make_problem()
    want = analytic(M, F, f0, c, beta=2.0)
    got, n = ours(G, Enc, M, F, f0, c, 2.0, method, **kw)
    assert n == (K if method == 'cg' else 120)
    assert torch.allclose(got, want, rtol=1e-8, atol=1e-10), (got - want).abs().max()


def test_hypergradient_matches_finite_differences():
    """Directional derivatives of Phi(F) = <c, z*(F)> + beta L_u(F), by central differences."""
    G, Enc, M, F, f0, c = make_problem(seed=1)
    beta = 0.7
    got, _ = ours(G, Enc, M, F, f0, c, beta, 'cg', cg_iters=K)

    def phi(Fx):
        return (c * z_star(M, Fx)).sum() + beta * (Fx - f0).pow(2).sum() / NF

    g = torch.Generator().manual_seed(5)
    for _ in range(5):
        u = torch.randn(F.shape, generator=g, dtype=torch.float64)
        h = 1e-5
        fd = (phi(F + h * u) - phi(F - h * u)) / (2 * h)
        assert abs(fd - (got * u).sum()) <= 1e-7 * max(1.0, abs(fd))


def test_without_the_implicit_term_the_gradient_is_wrong():
    """Guards the test itself: dropping the cross term must fail the comparison."""
    G, Enc, M, F, f0, c = make_problem()
    want = analytic(M, F, f0, c, beta=2.0)
    direct_only = 2 * 2.0 * (F - f0) / NF
    assert not torch.allclose(direct_only, want, rtol=1e-3)


def test_cg_damping_matches_the_neumann_filter_on_small_curvature():
    """With H's eigenvalues far below 1/(alpha * terms) the truncated series is ~alpha (terms+1) v;
    CG with neumann_damping gives nearly the same (within 5 %)."""
    G, Enc, M, F, f0, c = make_problem(lam_lo=0.01, lam_hi=0.5)
    mu = implicit.neumann_damping(1e-3, 120)
    got_n, _ = ours(G, Enc, M, F, f0, c, 0.0, 'neumann', alpha=1e-3, terms=120)
    got_c, _ = ours(G, Enc, M, F, f0, c, 0.0, 'cg', cg_iters=K, cg_damping=mu)
    assert (got_c - got_n).norm() <= 0.05 * got_n.norm()
    # and without damping, CG would give the (much larger) exact inverse instead
    got_exact, _ = ours(G, Enc, M, F, f0, c, 0.0, 'cg', cg_iters=K)
    assert (got_exact - got_n).norm() > 2 * got_n.norm()


def test_cg_solves_per_image_systems():
    """Batched CG: each row is its own system (a wrong global dot product breaks this)."""
    g = torch.Generator().manual_seed(3)
    Hs = []
    for i in range(4):
        Q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
        Hs.append(Q @ torch.diag(torch.linspace(1, 10 ** (i + 1), 5, dtype=torch.float64)) @ Q.T)
    H = torch.stack(Hs)
    v = torch.randn(4, 5, generator=g, dtype=torch.float64)
    x, n = implicit.conjugate_gradient(lambda u: torch.einsum('nij,nj->ni', H, u), v, iters=5,
                                       tol=0)
    assert torch.allclose(x, torch.linalg.solve(H, v.unsqueeze(-1)).squeeze(-1), rtol=1e-6)
