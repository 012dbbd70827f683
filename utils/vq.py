"""Discrete codes: vector quantization (VQ-VAE, van den Oord et al. 2017), residual quantization
(RQ-VAE, Lee et al. 2022), a learned prior over code grids, and the Gumbel-softmax relaxation.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import system


def nearest_code(flat: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook row for every row: flat (N, D), codebook (K, D) -> (N,).

    ||z - e_k||^2 = ||z||^2 - 2 z.e_k + ||e_k||^2, computed for all pairs at once.
    """
    distances = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codebook.T + codebook.pow(2).sum(1)
    return distances.argmin(1)


class VectorQuantizer(nn.Module):
    """Replace each D-dimensional vector of z_e (B, D, H, W) by its nearest of K codebook rows.

    Returns z_q with the straight-through gradient z_e + sg(e - z_e), the codes (B, H, W), and
    the loss ||sg(z_e) - e||^2 + beta ||z_e - sg(e)||^2 (codebook + commitment, eq. 3 of the
    paper). With ema=True the codebook is not learned by gradient: each row moves to an
    exponential moving average of the vectors assigned to it, and the loss keeps only the
    commitment term. With init="data" the first training batch initializes the codebook;
    init="random" keeps the N(0, I) start of the original paper's experiments.
    """

    def __init__(self, K: int, D: int, beta: float = 0.25, ema: bool = False, decay: float = 0.99,
                 eps: float = 1e-5, init: str = "data") -> None:
        super().__init__()
        if init not in ("data", "random"):
            raise ValueError(f"init must be 'data' or 'random', got {init!r}")
        self.K, self.D, self.beta, self.ema, self.decay, self.eps = K, D, beta, ema, decay, eps
        self.register_buffer("initialized", torch.tensor(init == "random"))
        init = torch.randn(K, D)
        if ema:
            self.register_buffer("codebook", init)
            self.register_buffer("cluster_size", torch.ones(K))
            self.register_buffer("embed_sum", init.clone())
        else:
            self.codebook = nn.Parameter(init)

    def forward(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, D, H, W = z_e.shape
        if D != self.D:
            raise ValueError(f"the quantizer holds {self.D}-dimensional codes, got {D} channels")
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, D)  # (B H W, D)
        if self.training and not self.initialized:
            self._init_from(flat.detach())
        codes = nearest_code(flat.detach(), self.codebook)
        if self.ema and self.training:
            self._ema_update(flat.detach(), codes)
        e = self.codebook[codes].view(B, H, W, D).permute(0, 3, 1, 2)  # (B, D, H, W)
        commitment = F.mse_loss(z_e, e.detach())
        loss = self.beta * commitment if self.ema else F.mse_loss(e, z_e.detach()) + self.beta * commitment
        z_q = z_e + (e - z_e).detach()  # forward: e; backward: the identity to z_e
        return z_q, codes.view(B, H, W), loss

    @torch.no_grad()
    def _init_from(self, flat: torch.Tensor) -> None:
        """Start the codebook at K of the first batch's vectors (with replacement if there are
        fewer), so that every code begins where the encoder's outputs are, not far away."""
        idx = torch.randint(len(flat), (self.K,)) if len(flat) < self.K else torch.randperm(len(flat))[: self.K]
        self.codebook.data.copy_(flat[idx])
        if self.ema:
            self.embed_sum.copy_(flat[idx])
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        """N_k <- d N_k + (1 - d) n_k;  m_k <- d m_k + (1 - d) sum_{i: k_i = k} z_i;  e_k = m_k / N_k
        (appendix A.1 of van den Oord et al.), with Laplace smoothing of N against division by 0."""
        one_hot = F.one_hot(codes, self.K).type(flat.dtype)  # (N, K)
        self.cluster_size.mul_(self.decay).add_(one_hot.sum(0), alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(one_hot.T @ flat, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.K * self.eps) * n
        self.codebook.copy_(self.embed_sum / smoothed[:, None])


class ResidualVQ(nn.Module):
    """Quantize z_e (B, D, H, W) in `depth` stages, each with its own codebook quantizing what
    the previous stages left: r_0 = z_e, e_d = Q_d(r_{d-1}), r_d = r_{d-1} - e_d, and
    z_q = sum_d e_d (RQ-VAE, Lee et al. 2022). Returns z_q (straight-through), the codes
    (B, depth, H, W) and the summed stage losses."""

    def __init__(self, depth: int, K: int, D: int, beta: float = 0.25, ema: bool = True, init: str = "data") -> None:
        super().__init__()
        self.stages = nn.ModuleList([VectorQuantizer(K, D, beta, ema, init=init) for _ in range(depth)])

    def forward(self, z_e: torch.Tensor, depth: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        residual, total, loss, codes = z_e, torch.zeros_like(z_e), z_e.new_zeros(()), []
        for stage in self.stages[:depth]:
            e, stage_codes, stage_loss = stage(residual)
            e = e.detach()  # the codebook vector; gradients reach the encoder through the losses
            total, residual = total + e, residual - e
            loss, codes = loss + stage_loss, codes + [stage_codes]
        return z_e + (total - z_e).detach(), torch.stack(codes, 1), loss


class VQVAE(nn.Module):
    """A VQ-VAE for (B, 1, 8, 8) digits: an MLP encoder outputs a (B, D, grid, grid) array of
    vectors, quantized by one codebook (depth=1) or residually by several, and an MLP decoder
    maps the quantized array back to pixel values in [0, 1]. (MLPs, not convolutions: several
    times faster on a CPU; a small convolutional version reconstructed 8x8 digits somewhat
    better, at about four times the training time.)"""

    def __init__(self, K: int = 64, D: int = 8, depth: int = 1, ema: bool = True, grid: int = 4,
                 hidden: int = 256, beta: float = 0.25, init: str = "data") -> None:
        super().__init__()
        self.shape = (D, grid, grid)
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                     nn.ReLU(), nn.Linear(hidden, D * grid * grid), nn.Unflatten(1, self.shape))
        self.quantizer = ResidualVQ(depth, K, D, beta, ema, init)
        self.decoder = nn.Sequential(nn.Flatten(), nn.Linear(D * grid * grid, hidden), nn.ReLU(),
                                     nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 64), nn.Sigmoid(),
                                     nn.Unflatten(1, (1, 8, 8)))

    def forward(self, x: torch.Tensor, depth: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction (B, 1, 8, 8), codes (B, depth, grid, grid), quantization loss."""
        z_q, codes, vq_loss = self.quantizer(self.encoder(x), depth)
        return self.decoder(z_q), codes, vq_loss

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, depth, grid, grid) -> images (B, 1, 8, 8)."""
        stages = self.quantizer.stages[: codes.shape[1]]
        z_q = sum(stage.codebook[codes[:, d]].permute(0, 3, 1, 2) for d, stage in enumerate(stages))
        return self.decoder(z_q)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction MSE plus the quantization loss, for train.fit."""
        x_hat, _, vq_loss = self(x)
        return F.mse_loss(x_hat, x) + vq_loss


def codebook_usage(codes: torch.Tensor, K: int) -> tuple[float, float]:
    """Fraction of the K codes used at least once in `codes`, and the perplexity exp(H) of
    their empirical distribution (K if all are used equally, 1 if only one is)."""
    counts = torch.bincount(codes.flatten().cpu(), minlength=K).double()  # float64: on the CPU
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return (counts > 0).double().mean().item(), math.exp(entropy.item())


class CodePrior(nn.Module):
    """An autoregressive prior over code grids read in raster order: an LSTM predicts each code
    from the ones before it, p(k) = prod_i p(k_i | k_<i). Codes (B, H, W) in 0..K-1; K is START."""

    def __init__(self, K: int, dim: int = 32, hidden: int = 128) -> None:
        super().__init__()
        self.K = K
        self.embed = nn.Embedding(K + 1, dim)
        self.lstm = nn.LSTM(dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, K)

    def _inputs(self, seq: torch.Tensor) -> torch.Tensor:
        start = torch.full((seq.shape[0], 1), self.K, dtype=torch.long, device=seq.device)
        return torch.cat([start, seq[:, :-1]], 1)  # shifted right by one

    def loss(self, codes: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood per code, in nats."""
        seq = codes.flatten(1)  # (B, H W)
        logits, _ = self.lstm(self.embed(self._inputs(seq)))
        return F.cross_entropy(self.head(logits).flatten(0, 1), seq.flatten())

    @torch.no_grad()
    def sample(self, n: int, shape: tuple[int, int], temperature: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """n code grids (n, H, W), one code at a time, all n in parallel."""
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        token = torch.full((n, 1), self.K, dtype=torch.long, device=system.device_of(self))
        state, out = None, []
        for _ in range(shape[0] * shape[1]):
            y, state = self.lstm(self.embed(token), state)
            probs = torch.softmax(self.head(y[:, -1]) / temperature, -1)
            # Drawn with the CPU generator on the CPU, then moved: CUDA refuses a CPU generator.
            token = torch.multinomial(probs.cpu(), 1, generator=generator).to(probs.device)
            out.append(token)
        return torch.cat(out, 1).view(n, *shape)


def gumbel_softmax(logits: torch.Tensor, tau: float, hard: bool = False,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """softmax((logits + g) / tau) with g_i = -log(-log u_i), u ~ U(0, 1) (Jang et al. 2017;
    Maddison et al. 2017). As tau -> 0 it approaches the one-hot arg-max of logits + g, which
    is an exact sample of softmax(logits) (the Gumbel-max trick). hard=True returns that
    one-hot in the forward pass with the relaxed gradient (straight-through)."""
    u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype).to(logits.device).clamp(1e-20, 1 - 1e-7)
    y = torch.softmax((logits - torch.log(-torch.log(u))) / tau, -1)
    if not hard:
        return y
    one_hot = F.one_hot(y.argmax(-1), logits.shape[-1]).to(y.dtype)
    return one_hot + (y - y.detach())
