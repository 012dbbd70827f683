"""Denoising diffusion (Ho et al. 2020), DDIM sampling (Song et al. 2021) and the score view.

Time runs t = 0, 1, ..., T with x_0 the data; every schedule array is indexed by t itself, so
beta[0] = 0 and alpha_bar[0] = 1. q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I).
"""
from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from . import system

EpsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, t) -> eps_pred

# --- Noise schedules -------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """beta_t for t = 0..T (beta_0 = 0), with alpha_t = 1 - beta_t and alpha_bar_t = prod_s<=t alpha_s."""

    betas: torch.Tensor  # (T + 1,), float64

    def __post_init__(self) -> None:
        b = self.betas
        if b.dim() != 1 or len(b) < 2 or b[0] != 0 or not bool(((b[1:] > 0) & (b[1:] < 1)).all()):
            raise ValueError("betas must be a 1-D tensor [0, beta_1, ..., beta_T] with 0 < beta_t < 1")

    @property
    def T(self) -> int:
        return len(self.betas) - 1

    @property
    def alphas(self) -> torch.Tensor:
        return 1 - self.betas

    @property
    def alpha_bar(self) -> torch.Tensor:
        return torch.cumprod(self.alphas, 0)


def linear_schedule(T: int = 1000, beta_1: float = 1e-4, beta_T: float = 0.02) -> Schedule:
    """beta_t rising linearly from beta_1 to beta_T (Ho et al. 2020), both scaled by 1000 / T so that
    any T destroys the data about as much as Ho's T = 1000 (Nichol & Dhariwal 2021)."""
    scale = 1000 / T
    betas = torch.linspace(scale * beta_1, scale * beta_T, T, dtype=torch.float64)
    return Schedule(torch.cat([torch.zeros(1, dtype=torch.float64), betas]))


def cosine_schedule(T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
    """alpha_bar_t = f(t) / f(0), f(t) = cos((t / T + s) / (1 + s) * pi / 2)^2 (Nichol & Dhariwal 2021,
    eq. 17), with beta_t = 1 - alpha_bar_t / alpha_bar_{t-1} clipped at max_beta."""
    t = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)
    return Schedule(torch.cat([torch.zeros(1, dtype=torch.float64), betas]))


def _at(values: torch.Tensor, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
    """values[t] shaped (B, 1, ..., 1) to broadcast against a batch like `like` (B, ...)."""
    # values stay on the CPU in float64 and leave it in like's dtype: Apple's MPS has no float64
    v = (values[t.cpu()] if isinstance(t, torch.Tensor) else values[t]).to(like.dtype).to(like.device)
    return v.view(-1, *([1] * (like.dim() - 1))) if v.dim() else v


# --- The forward process and the training loss -------------------------------------------------


def q_sample(x_0: torch.Tensor, t: torch.Tensor | int, schedule: Schedule, eps: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, a sample of q(x_t | x_0)
    (Ho et al. 2020, eq. 4): x_0, eps (B, ...), t an int or (B,) ints in 0..T."""
    ab = _at(schedule.alpha_bar, t, x_0)
    return ab.sqrt() * x_0 + (1 - ab).sqrt() * eps


def q_step(x_prev: torch.Tensor, t: int, schedule: Schedule, eps: torch.Tensor) -> torch.Tensor:
    """One step of the forward chain, x_t ~ q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)."""
    beta = schedule.betas[t].item()
    return math.sqrt(1 - beta) * x_prev + math.sqrt(beta) * eps


def diffusion_loss(model: EpsModel, x_0: torch.Tensor, schedule: Schedule,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """L_simple = E_{t, x_0, eps} ||eps - eps_theta(x_t, t)||^2 with t uniform on 1..T (Ho et al. 2020,
    eq. 14), averaged over the batch and the coordinates."""
    t = torch.randint(1, schedule.T + 1, (len(x_0),), generator=generator).to(x_0.device)
    eps = torch.randn(x_0.shape, generator=generator, dtype=x_0.dtype).to(x_0.device)
    return F.mse_loss(model(q_sample(x_0, t, schedule, eps), t), eps)


# --- Reverse process: ancestral (DDPM) and DDIM sampling ---------------------------------------


def predict_x0(x_t: torch.Tensor, t: torch.Tensor | int, eps_pred: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t): q_sample solved for x_0."""
    ab = _at(schedule.alpha_bar, t, x_t)
    return (x_t - (1 - ab).sqrt() * eps_pred) / ab.sqrt()


def score_from_eps(eps_pred: torch.Tensor, t: torch.Tensor | int, schedule: Schedule) -> torch.Tensor:
    """grad_x log q_t(x) = -E[eps | x_t = x] / sqrt(1 - alpha_bar_t): an eps-predictor is a scaled
    score (Vincent 2011; Song et al. 2021, score SDE)."""
    return -eps_pred / (1 - _at(schedule.alpha_bar, t, eps_pred)).sqrt()


def p_sample(eps_pred: torch.Tensor, x_t: torch.Tensor, t: int, schedule: Schedule,
             noise: torch.Tensor) -> torch.Tensor:
    """x_{t-1} = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_pred) / sqrt(alpha_t) + sigma_t z, the mean of
    Ho et al. (2020, Algorithm 2), with sigma_t^2 = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t, the
    variance of q(x_{t-1} | x_t, x_0) (their eq. 7), which stays below beta_t; no noise at t = 1."""
    beta, ab, alpha = (schedule.betas[t].item(), schedule.alpha_bar[t].item(), schedule.alphas[t].item())
    ab_prev = schedule.alpha_bar[t - 1].item()
    mean = (x_t - beta / math.sqrt(1 - ab) * eps_pred) / math.sqrt(alpha)
    return mean + math.sqrt((1 - ab_prev) / (1 - ab) * beta) * noise if t > 1 else mean


def ddim_timesteps(T: int, steps: int) -> list[int]:
    """`steps` timesteps from T down to 1, evenly spaced (Song et al. 2021, section 4.2)."""
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be between 1 and T = {T}, got {steps}")
    return sorted({round(T - i * T / steps) for i in range(steps)}, reverse=True)


@torch.no_grad()
def sample(model: EpsModel, shape: Sequence[int], schedule: Schedule, steps: int | None = None,
           generator: torch.Generator | None = None, clip: float | None = None,
           keep: Sequence[int] = (), desc: str = "sampling") -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Generate from x_T ~ N(0, I). steps=None: ancestral DDPM sampling through all T steps;
    steps=S: deterministic DDIM (eta = 0) on S timesteps, x_s = sqrt(alpha_bar_s) x0_pred +
    sqrt(1 - alpha_bar_s) eps_pred (Song et al. 2021, eq. 12). clip bounds x0_pred to [-clip, clip]
    before either step (images live in [-1, 1]; Ho et al. clip the same way). Returns x_0 and the
    states at the timesteps listed in `keep`."""
    device = system.device_of(model)
    x = torch.randn(tuple(shape), generator=generator).to(device)
    kept = {schedule.T: x.clone()} if schedule.T in keep else {}
    times = list(range(schedule.T, 0, -1)) if steps is None else ddim_timesteps(schedule.T, steps)
    for i, t in enumerate(tqdm(times, desc=desc, disable=system.is_quiet(), file=sys.stderr, leave=False)):
        eps_pred = model(x, torch.full((shape[0],), t, dtype=torch.long, device=device))
        x0_pred = predict_x0(x, t, eps_pred, schedule)
        if clip is not None:  # keep x0_pred in range and the eps that goes with it
            x0_pred = x0_pred.clamp(-clip, clip)
            ab = schedule.alpha_bar[t].item()
            eps_pred = (x - math.sqrt(ab) * x0_pred) / math.sqrt(1 - ab)
        if steps is None:
            t_next = t - 1
            x = p_sample(eps_pred, x, t, schedule, torch.randn(x.shape, generator=generator).to(device))
        else:
            t_next = times[i + 1] if i + 1 < len(times) else 0
            ab_next = schedule.alpha_bar[t_next].item()
            x = math.sqrt(ab_next) * x0_pred + math.sqrt(1 - ab_next) * eps_pred
        if t_next in keep:
            kept[t_next] = x.clone()
    return x, kept


# --- Conditioning on a label: classifier-free guidance ------------------------------------------


def drop_labels(y: torch.Tensor, p: float, null: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """y with each label replaced by `null` with probability p: one network learns eps(x_t, t, y)
    and the unconditional eps(x_t, t) at once (Ho & Salimans 2021, Algorithm 1)."""
    drop = torch.rand(y.shape, generator=generator).to(y.device) < p
    return torch.where(drop, torch.full_like(y, null), y)


class Guided(nn.Module):
    """The EpsModel (x_t, t) -> (1 + w) eps(x_t, t, y) - w eps(x_t, t, null) for fixed labels y (B,):
    classifier-free guidance (Ho & Salimans 2021). Since eps = -sqrt(1 - alpha_bar_t) score,
    it is the eps of p_t(x | y) p_t(y | x)^w: w = 0 samples p(x | y), w > 0 favours the x that make
    the label likelier. Both predictions come from one batch of twice the size."""

    def __init__(self, model: nn.Module, y: torch.Tensor, w: float) -> None:
        super().__init__()
        self.model, self.y, self.w = model, y, w

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        y = self.y.to(x_t.device)
        if self.w == 0:
            return self.model(x_t, t, y)
        no_label = torch.full_like(y, self.model.null)
        both = self.model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([y, no_label]))
        eps_y, eps_none = both.chunk(2)
        return (1 + self.w) * eps_y - self.w * eps_none


def langevin(score: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, step: float, n_steps: int,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Unadjusted Langevin dynamics x <- x + step * score(x) + sqrt(2 step) z, whose stationary
    distribution tends to p as step -> 0 (Welling & Teh 2011; Song & Ermon 2019)."""
    for _ in range(n_steps):
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        x = x + step * score(x) + math.sqrt(2 * step) * z
    return x


# --- A density with a known score: a mixture of isotropic Gaussians -----------------------------


@dataclass(frozen=True)
class GaussianMixture:
    """sum_k w_k N(means_k, std^2 I): means (K, d), equal weights unless given. Its noised version
    under q(x_t | x_0) is again such a mixture, so every score of the forward process is exact."""

    means: torch.Tensor
    std: float
    weights: torch.Tensor | None = None

    def _log_w(self) -> torch.Tensor:
        K = len(self.means)
        w = torch.full((K,), 1 / K, dtype=self.means.dtype, device=self.means.device) if self.weights is None \
            else self.weights
        return w.log()

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        k = torch.multinomial(self._log_w().exp(), n, replacement=True, generator=generator)
        return self.means[k] + self.std * torch.randn(n, self.means.shape[1], generator=generator)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) for points (B, d) -> (B,)."""
        d = self.means.shape[1]
        sq = torch.cdist(x, self.means.to(x.dtype)).pow(2)  # (B, K)
        log_n = -0.5 * sq / self.std**2 - d * math.log(self.std) - 0.5 * d * math.log(2 * math.pi)
        return torch.logsumexp(self._log_w().to(x.dtype) + log_n, 1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """grad_x log p(x) = sum_k r_k(x) (mu_k - x) / std^2 with r_k the responsibilities: (B, d)."""
        sq = torch.cdist(x, self.means.to(x.dtype)).pow(2)
        r = torch.softmax(self._log_w().to(x.dtype) - 0.5 * sq / self.std**2, 1)  # (B, K)
        return (r @ self.means.to(x.dtype) - x) / self.std**2

    def noised(self, alpha_bar: float) -> GaussianMixture:
        """The distribution of x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) eps for x_0 ~ self."""
        std = math.sqrt(alpha_bar * self.std**2 + 1 - alpha_bar)
        return GaussianMixture(math.sqrt(alpha_bar) * self.means, std, self.weights)

    def eps_model(self, schedule: Schedule) -> EpsModel:
        """The exact E[eps | x_t] = -sqrt(1 - alpha_bar_t) score_t(x_t), per row of t: the best eps_theta."""
        def eps(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            ab = _at(schedule.alpha_bar, t, x_t[:, 0])  # (B,)
            means = ab.sqrt()[:, None, None] * self.means.to(x_t.dtype)[None]  # (B, K, d)
            var = ab * self.std**2 + 1 - ab  # (B,)
            sq = (x_t[:, None, :] - means).pow(2).sum(-1)  # (B, K)
            r = torch.softmax(self._log_w().to(x_t.dtype) - 0.5 * sq / var[:, None], 1)
            score = ((r[:, :, None] * means).sum(1) - x_t) / var[:, None]
            return -(1 - ab).sqrt()[:, None] * score
        return eps


# --- Networks that predict eps -----------------------------------------------------------------


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal features [cos(t w_i), sin(t w_i)] of integer steps t (B,) -> (B, dim), w_i
    geometric from 1 to 1/max_period (Vaswani et al. 2017; Ho et al. 2020)."""
    half = dim // 2
    w = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angle = t.float()[:, None] * w[None]
    return torch.cat([angle.cos(), angle.sin()], 1)


class PlainMLP(nn.Module):
    """eps_theta(x_t, t) = MLP([x_t, t / T]): the time enters once, at the input."""

    def __init__(self, T: int, dim: int = 2, hidden: int = 128, layers: int = 4) -> None:
        super().__init__()
        self.T = T
        sizes = [dim + 1] + [hidden] * layers
        body: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            body += [nn.Linear(a, b), nn.SiLU()]
        self.net = nn.Sequential(*body, nn.Linear(hidden, dim))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x_t, (t.float() / self.T)[:, None]], 1))


class ResidualMLP(nn.Module):
    """eps_theta(x_t, t) for points (B, d): residual blocks h <- h + W2 silu(W1 silu(h) + E t_emb),
    each with its own projection of the time embedding, so every block knows the noise level."""

    def __init__(self, dim: int = 2, hidden: int = 128, blocks: int = 3, t_dim: int = 64) -> None:
        super().__init__()
        self.t_dim = t_dim
        self.time = nn.Sequential(nn.Linear(t_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(
            nn.ModuleDict({"w1": nn.Linear(hidden, hidden), "emb": nn.Linear(hidden, hidden),
                           "w2": nn.Linear(hidden, hidden)}) for _ in range(blocks))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time(timestep_embedding(t, self.t_dim))  # (B, hidden)
        h = self.inp(x_t)
        for b in self.blocks:
            h = h + b["w2"](F.silu(b["w1"](F.silu(h)) + b["emb"](emb)))
        return self.out(h)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the time embedding added in between, and a skip connection."""

    def __init__(self, c_in: int, c_out: int, emb: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(8, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(8, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(emb)[:, :, None, None]
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class UNet(nn.Module):
    """A two-level U-Net for (B, 1, 8, 8) images (Ronneberger et al. 2015, as used by Ho et al. 2020):
    8x8 -> 4x4 -> 8x8 with skip connections and the time embedding in every residual block.
    With classes > 0 it also takes labels y (B,) in 0..classes - 1, or `null` for none."""

    def __init__(self, channels: int = 32, t_dim: int = 64, classes: int = 0) -> None:
        super().__init__()
        c, e = channels, 4 * channels
        self.t_dim = t_dim
        self.time = nn.Sequential(nn.Linear(t_dim, e), nn.SiLU(), nn.Linear(e, e))
        self.inp = nn.Conv2d(1, c, 3, padding=1)
        self.down1 = ResBlock(c, c, e)  # (B, c, 8, 8)
        self.downsample = nn.Conv2d(c, c, 3, stride=2, padding=1)  # -> (B, c, 4, 4)
        self.down2 = ResBlock(c, 2 * c, e)
        self.mid = ResBlock(2 * c, 2 * c, e)
        self.up2 = ResBlock(4 * c, 2 * c, e)  # [mid, down2] -> (B, 2c, 4, 4)
        self.upsample = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(2 * c, c, 3, padding=1))
        self.up1 = ResBlock(2 * c, c, e)  # [up, down1] -> (B, c, 8, 8)
        self.out = nn.Sequential(nn.GroupNorm(8, c), nn.SiLU(), nn.Conv2d(c, 1, 3, padding=1))
        # classes > 0: a learned embedding of the label joins the time embedding; the extra last
        # row, index `null`, stands for "no label" (Ho & Salimans 2021).
        self.null = classes
        self.label = nn.Embedding(classes + 1, e) if classes else None

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time(timestep_embedding(t, self.t_dim))
        if self.label is not None:
            y = torch.full_like(t, self.null) if y is None else y.to(t.device)
            emb = emb + self.label(y)
        elif y is not None:
            raise ValueError("this U-Net has no labels: build it with UNet(classes=...)")
        h1 = self.down1(self.inp(x_t), emb)
        h2 = self.down2(self.downsample(h1), emb)
        h = self.up2(torch.cat([self.mid(h2, emb), h2], 1), emb)
        h = self.up1(torch.cat([self.upsample(h), h1], 1), emb)
        return self.out(h)
