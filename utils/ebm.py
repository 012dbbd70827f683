"""Energy-based models and score matching.

An energy E_theta(x) defines p_theta(x) = exp(-E_theta(x)) / Z(theta), Z(theta) = int exp(-E_theta).
Z is intractable in high dimension, but the likelihood needs only its gradient,

    grad_theta log Z = -E_{x ~ p_theta}[grad_theta E_theta(x)],

and the score grad_x log p_theta = -grad_x E_theta does not involve Z at all (Hyvarinen 2005).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from . import diffusion

Energy = Callable[[torch.Tensor], torch.Tensor]  # (B, d) -> (B,)
Score = Callable[[torch.Tensor], torch.Tensor]  # (B, d) -> (B, d)


class EnergyMLP(nn.Module):
    """E_theta(x) for points (B, d) -> (B,): an MLP with smooth (SiLU) units, so that the Hessian
    needed by score matching exists everywhere, plus a weak quadratic term c|x|^2 that keeps
    exp(-E) integrable far from the data."""

    def __init__(self, dim: int = 2, hidden: int = 64, confine: float = 0.01) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, 1))
        self.confine = confine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1) + self.confine * x.pow(2).sum(-1)


def score(energy: Energy, x: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """grad_x log p_theta(x) = -grad_x E_theta(x): (B, d) -> (B, d)."""
    with torch.enable_grad():
        x = x if x.requires_grad else x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(energy(x).sum(), x, create_graph=create_graph)
    return -grad


def implicit_score_matching_loss(energy: Energy, x: torch.Tensor) -> torch.Tensor:
    """Hyvarinen's tractable form of the Fisher divergence, up to a constant that does not depend
    on theta: E_x[ 1/2 |s_theta(x)|^2 + tr grad_x s_theta(x) ], s_theta = -grad_x E_theta.
    The trace is exact: one more backward pass per dimension (fine for the small d used here)."""
    x = x.detach().requires_grad_(True)
    s = score(energy, x, create_graph=True)
    trace = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for i in range(x.shape[1]):
        (row,) = torch.autograd.grad(s[:, i].sum(), x, create_graph=True)
        trace = trace + row[:, i]
    return (0.5 * s.pow(2).sum(-1) + trace).mean()


def denoising_score_matching_loss(score_fn: Score, x: torch.Tensor, sigma: float,
                                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Vincent (2011): E |s(x + sigma eps) + eps / sigma|^2 / 2 matches the score of the data
    blurred by N(0, sigma^2 I); with s = -eps_theta / sigma it is chapter 11's loss over sigma^2."""
    eps = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return 0.5 * (score_fn(x + sigma * eps) + eps / sigma).pow(2).sum(-1).mean()


def fisher_divergence(score_fn: Score, true_score: Score, x: torch.Tensor) -> float:
    """1/2 E_{x ~ p}|s_theta(x) - grad log p(x)|^2 on samples x of p (needs the true score)."""
    return 0.5 * (score_fn(x) - true_score(x)).pow(2).sum(-1).mean().item()


def contrastive_loss(energy: Energy, x_data: torch.Tensor, x_model: torch.Tensor) -> torch.Tensor:
    """E_data[E_theta] - E_model[E_theta]. With x_model ~ p_theta (held fixed), its gradient in theta
    is the gradient of the negative log-likelihood, the second term standing for grad log Z."""
    return energy(x_data).mean() - energy(x_model.detach()).mean()


def grid(lim: float, n: int) -> tuple[torch.Tensor, float]:
    """An n x n grid of points covering [-lim, lim]^2, as (n * n, 2), and the area of one cell."""
    axis = torch.linspace(-lim, lim, n, dtype=torch.float64)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    return torch.stack([xx.flatten(), yy.flatten()], 1), float((axis[1] - axis[0]) ** 2)


def log_partition(energy: Energy, lim: float = 4.0, n: int = 200) -> torch.Tensor:
    """log Z = log int exp(-E) over [-lim, lim]^2 by the midpoint rule: possible in 2-D only, which
    is the point. Differentiable in theta."""
    points, cell = grid(lim, n)
    return torch.logsumexp(-energy(points.float()), 0) + math.log(cell)


def langevin_energy(energy: Energy, x: torch.Tensor, step: float, n_steps: int,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Unadjusted Langevin dynamics x <- x - step * grad E(x) + sqrt(2 step) z, on an energy:
    chapter 11's sampler with the score -grad E."""
    return diffusion.langevin(lambda v: score(energy, v), x, step, n_steps, generator)
