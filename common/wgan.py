"""WGAN-GP pieces shared by the GAN stage and the Crafter's per-batch critic."""
import torch


def gradient_penalty(D, real, fake):
    """Gulrajani et al.: E[(||grad D(x_hat)|| - 1)^2] on random interpolates."""
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    grad, = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def critic_step(D, opt, real, fake, gp_weight, sync=False):
    """One critic update; returns (Wasserstein estimate E[D(real)] - E[D(fake)], penalty).

    sync: under torchrun, average the critic's gradient over the ranks (each holding its share of
    the global batch) before the step; by hand, as DDP cannot take the penalty's double backward.
    """
    real, fake = real.detach(), fake.detach()
    d_real, d_fake = D(real).mean(), D(fake).mean()
    gp = gradient_penalty(D, real, fake)
    loss = d_fake - d_real + gp_weight * gp
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if sync:
        from common import dist
        dist.average_grads(D)
    opt.step()
    return (d_real - d_fake).item(), gp.item()
