"""Normalizing flows: coupling layers (NICE, RealNVP) and autoregressive flows (MAF, IAF).

Every flow here maps data to noise, z = f(x), with z ~ N(0, I), and the change of variables
gives the exact log-likelihood

    log p(x) = log N(f(x); 0, I) + log |det df/dx|

(Dinh et al. 2015, 2017). Sampling runs the inverse, x = f^{-1}(z). Each layer returns its
output and its log|det| so that a stack adds them up; the layers are named with the
papers' mu (shift) and alpha (log-scale): z_2 = (x_2 - mu(x_1)) * exp(-alpha(x_1)).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from . import system

LOG_2PI = math.log(2 * math.pi)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last dimension: (B, d) -> (B,)."""
    return -0.5 * (z.pow(2).sum(-1) + z.shape[-1] * LOG_2PI)


def log_abs_det_jacobian(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """log |det df/dx| at every row of x (B, d), from the full Jacobian that autograd builds:
    O(d^3) per point, the reference that a flow's cheap formula is checked against."""
    jac = torch.func.vmap(torch.func.jacrev(lambda row: f(row[None])[0]))(x)  # (B, d, d)
    return torch.linalg.slogdet(jac).logabsdet


def _mlp(n_in: int, n_out: int, hidden: int) -> nn.Sequential:
    net = nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                        nn.Linear(hidden, n_out))
    nn.init.zeros_(net[-1].weight)  # every layer starts as the identity: a stable first step
    nn.init.zeros_(net[-1].bias)
    return net


# --- Coupling layers ---------------------------------------------------------------------------


class AffineCoupling(nn.Module):
    """One coupling layer. The coordinates where `mask` is 1 pass unchanged (x_1); the others are
    shifted and scaled by functions of x_1:

        z_1 = x_1,   z_2 = (x_2 - mu(x_1)) * exp(-alpha(x_1)),   log|det| = -sum alpha(x_1).

    The Jacobian is triangular (dz_1/dx_2 = 0), so its determinant is the product of the diagonal.
    With additive=True, alpha = 0: NICE's additive coupling, which preserves volume (det = 1).
    The log-scale is bounded, alpha = a * tanh(raw / a) with a = 3, which keeps early steps finite.
    """

    def __init__(self, mask: torch.Tensor, hidden: int = 64, additive: bool = False) -> None:
        super().__init__()
        if mask.dim() != 1 or not bool(((mask == 0) | (mask == 1)).all()) or not 0 < mask.sum() < len(mask):
            raise ValueError("mask must be a 1-D tensor of 0s and 1s with both values present")
        self.register_buffer("mask", mask.float())
        self.additive = additive
        self.net = _mlp(len(mask), len(mask) if additive else 2 * len(mask), hidden)

    def _mu_alpha(self, x_1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(x_1)
        if self.additive:
            return out, torch.zeros_like(out)
        mu, raw = out.chunk(2, -1)
        return mu, 3.0 * torch.tanh(raw / 3.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x -> (z, log|det dz/dx|): (B, d) -> (B, d), (B,)."""
        keep = self.mask
        mu, alpha = self._mu_alpha(x * keep)
        z = keep * x + (1 - keep) * (x - mu) * torch.exp(-alpha)
        return z, -((1 - keep) * alpha).sum(-1)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """z -> x in one pass: x_1 = z_1 is known, so mu and alpha can be recomputed."""
        keep = self.mask
        mu, alpha = self._mu_alpha(z * keep)
        return keep * z + (1 - keep) * (z * torch.exp(alpha) + mu)


class Scale(nn.Module):
    """z = x * exp(s) with a learned s per coordinate, log|det| = sum s: NICE's last layer, the only
    one of that model that changes volume (Dinh et al. 2015, section 3.3)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.s = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * torch.exp(self.s), self.s.sum().expand(x.shape[0])

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return z * torch.exp(-self.s)


class Flow(nn.Module):
    """A stack of layers, each with forward(x) -> (z, log_det) and inverse(z) -> x, on N(0, I)."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_det = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for layer in self.layers:
            x, ld = layer(x)
            log_det = log_det + ld
        return x, log_det

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) (B, d) -> (B,) by the change of variables."""
        z, log_det = self(x)
        return standard_normal_log_prob(z) + log_det

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            z = layer.inverse(z)
        return z

    @torch.no_grad()
    def sample(self, n: int, dim: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.inverse(torch.randn(n, dim, generator=generator).to(system.device_of(self)))


def coupling_flow(dim: int = 2, n_layers: int = 8, hidden: int = 64, additive: bool = False) -> Flow:
    """RealNVP, or NICE with additive=True (then followed by a Scale layer), with masks alternating
    between the two halves of the coordinates, so that every coordinate is transformed by every
    other layer."""
    if dim < 2 or n_layers < 1:
        raise ValueError(f"a coupling flow needs dim >= 2 and n_layers >= 1, got {dim} and {n_layers}")
    first = (torch.arange(dim) < dim // 2).float()
    layers: list[nn.Module] = [AffineCoupling(first if k % 2 == 0 else 1 - first, hidden, additive)
                               for k in range(n_layers)]
    return Flow(layers + [Scale(dim)] if additive else layers)


# --- Autoregressive flows ----------------------------------------------------------------------


class MaskedLinear(nn.Linear):
    def __init__(self, n_in: int, n_out: int, mask: torch.Tensor) -> None:
        super().__init__(n_in, n_out)
        self.register_buffer("mask", mask.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """An MLP whose output i depends only on inputs < i (Germain et al. 2015): (B, d) -> mu, alpha.

    Inputs have degrees 1..d, hidden units degrees in 1..d-1; a weight is kept from degree m to
    degree m' when m' >= m (hidden) or m' > m (output). Output 1 therefore sees no input at all.
    """

    def __init__(self, dim: int, hidden: int = 64) -> None:
        super().__init__()
        if dim < 2:
            raise ValueError(f"an autoregressive flow needs dim >= 2, got {dim}")
        d_in = torch.arange(1, dim + 1)
        d_hid = torch.arange(hidden) % (dim - 1) + 1
        self.net = nn.Sequential(
            MaskedLinear(dim, hidden, d_hid[:, None] >= d_in[None]), nn.SiLU(),
            MaskedLinear(hidden, hidden, d_hid[:, None] >= d_hid[None]), nn.SiLU(),
            MaskedLinear(hidden, 2 * dim, torch.cat([d_in, d_in])[:, None] > d_hid[None]))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, raw = self.net(x).chunk(2, -1)
        return mu, 3.0 * torch.tanh(raw / 3.0)


class MAF(nn.Module):
    """Masked autoregressive flow (Papamakarios et al. 2017): z_i = (x_i - mu(x_<i)) exp(-alpha(x_<i)).

    Density: one pass of the MADE over x, since every x_<i is known. Sampling: d passes, because
    x_i needs x_<i, which is only known once the earlier coordinates have been produced.
    """

    def __init__(self, dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.made = MADE(dim, hidden)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, alpha = self.made(x)
        return (x - mu) * torch.exp(-alpha), -alpha.sum(-1)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        x = torch.zeros_like(z)
        for i in range(z.shape[-1]):
            mu, alpha = self.made(x)
            x = x.clone()
            x[:, i] = z[:, i] * torch.exp(alpha[:, i]) + mu[:, i]
        return x


class IAF(nn.Module):
    """Inverse autoregressive flow (Kingma et al. 2016): x_i = z_i exp(alpha(z_<i)) + mu(z_<i).

    The mirror image of MAF: sampling is one pass over z; the density of a given x needs z, which
    is recovered coordinate by coordinate, in d passes. forward (x -> z) is the slow direction.
    """

    def __init__(self, dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.made = MADE(dim, hidden)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        mu, alpha = self.made(z)
        return z * torch.exp(alpha) + mu

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.zeros_like(x)
        for i in range(x.shape[-1]):
            mu, alpha = self.made(z)
            z = z.clone()
            z[:, i] = (x[:, i] - mu[:, i]) * torch.exp(-alpha[:, i])
        _, alpha = self.made(z)
        return z, -alpha.sum(-1)


class Reverse(nn.Module):
    """Reverse the order of the coordinates (volume-preserving, log|det| = 0), so that stacked
    autoregressive layers condition each coordinate on different others."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.flip(-1), torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return z.flip(-1)


def autoregressive_flow(kind: str, dim: int, n_layers: int = 4, hidden: int = 64) -> Flow:
    """A stack of MAF or IAF layers ("maf" or "iaf") with the order reversed between them."""
    layer = {"maf": MAF, "iaf": IAF}.get(kind)
    if layer is None:
        raise ValueError(f"kind must be 'maf' or 'iaf', got {kind!r}")
    layers: list[nn.Module] = []
    for k in range(n_layers):
        layers += [layer(dim, hidden)] + ([Reverse()] if k < n_layers - 1 else [])
    return Flow(layers)
