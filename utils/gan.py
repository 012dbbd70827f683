"""Generative adversarial networks (Goodfellow et al. 2014) and the tricks that train them.

V(G, D) = E_x~p_data[log D(x)] + E_z~p(z)[log(1 - D(G(z)))]; D is trained to ascend V and
G to descend it. Every trick of the lecture's list is a switch of `Tricks`.
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from . import system

# --- Densities and the optimal discriminator ---------------------------------------------------


def optimal_discriminator(p_data: torch.Tensor, p_g: torch.Tensor) -> torch.Tensor:
    """D*(x) = p_data(x) / (p_data(x) + p_g(x)) for a fixed G (Goodfellow et al. 2014, Prop. 1)."""
    return p_data / (p_data + p_g)


def js_divergence(p: torch.Tensor, q: torch.Tensor, dx: float) -> torch.Tensor:
    """JSD(p || q) = KL(p || m)/2 + KL(q || m)/2 with m = (p + q)/2, for densities on a grid of step dx."""
    m = (p + q) / 2
    kl = lambda a: torch.where(a > 0, a * (a / m).log(), torch.zeros_like(a)).sum() * dx  # noqa: E731
    return (kl(p) + kl(q)) / 2


def ring(n: int, modes: int = 8, radius: float = 2.0, std: float = 0.05,
         generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """n points of a mixture of `modes` Gaussians evenly spaced on a circle: (n, 2) and their modes (n,)."""
    k = torch.randint(0, modes, (n,), generator=generator)
    angle = 2 * math.pi * k / modes
    centers = radius * torch.stack([angle.cos(), angle.sin()], 1)
    return centers + std * torch.randn(n, 2, generator=generator), k


def ring_centers(modes: int = 8, radius: float = 2.0) -> torch.Tensor:
    angle = 2 * math.pi * torch.arange(modes) / modes
    return radius * torch.stack([angle.cos(), angle.sin()], 1)


def modes_covered(samples: torch.Tensor, centers: torch.Tensor, std: float,
                  min_fraction: float = 0.01) -> tuple[int, float]:
    """(number of modes that receive at least min_fraction of the samples within 3 std, fraction
    of samples within 3 std of some mode): coverage and quality, as in Metz et al. (2017)."""
    distance, nearest = torch.cdist(samples, centers).min(1)
    good = distance < 3 * std
    counts = torch.bincount(nearest[good], minlength=len(centers))
    return int((counts >= min_fraction * len(samples)).sum()), good.float().mean().item()


# --- Losses ------------------------------------------------------------------------------------


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor,
                       real_label: float = 1.0, fake_label: float = 0.0) -> torch.Tensor:
    """-(E[log D(x)] + E[log(1 - D(G(z)))]) with D = sigmoid(logits): the negative of V, so that
    minimizing it ascends V. Labels other than 1 and 0 give label smoothing."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, real_label))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.full_like(fake_logits, fake_label))
    return real + fake


def generator_loss(fake_logits: torch.Tensor, saturating: bool = False) -> torch.Tensor:
    """Saturating: E[log(1 - D(G(z)))], the term of V that G minimizes. Non-saturating:
    -E[log D(G(z))], same fixed point, but a strong gradient when D rejects the fakes."""
    if saturating:
        return -F.softplus(fake_logits).mean()  # log(1 - sigmoid(l)) = -softplus(l)
    return F.softplus(-fake_logits).mean()  # -log sigmoid(l) = softplus(-l)


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                     fake: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """E[(||grad_x f(x_hat)|| - 1)^2] at x_hat uniform on segments real-fake (Gulrajani et al. 2017)."""
    shape = (len(real),) + (1,) * (real.dim() - 1)
    t = torch.rand(shape, generator=generator, dtype=real.dtype).to(real.device)
    x_hat = (t * real + (1 - t) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


# --- Networks ----------------------------------------------------------------------------------


def mlp(sizes: list[int], activation: Callable[[], nn.Module] = nn.ReLU, dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class MinibatchDiscrimination(nn.Module):
    """Appends to each row features that measure how close it is to the other rows of the batch
    (Salimans et al. 2016): o_b = sum_j exp(-||M_i,b - M_j,b||_1), M = x T. A generator stuck
    on one mode makes these features large, and D can see it."""

    def __init__(self, in_features: int, kernels: int = 8, kernel_dim: int = 3) -> None:
        super().__init__()
        self.T = nn.Parameter(torch.randn(in_features, kernels * kernel_dim) * 0.1)
        self.kernels, self.kernel_dim = kernels, kernel_dim
        self.out_features = in_features + kernels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        M = (x @ self.T).view(-1, self.kernels, self.kernel_dim).transpose(0, 1)  # (kernels, B, dim)
        distance = torch.cdist(M, M, p=1)  # (kernels, B, B)
        o = torch.exp(-distance).sum(2).T - 1  # (B, kernels), minus the row itself
        return torch.cat([x, o], 1)


class Generator(nn.Module):
    """DCGAN-style generator for 8x8 digits: z (B, z_dim) -> (B, 1, 8, 8) through transposed
    convolutions with batch norm (Radford et al. 2016); tanh output in [-1, 1] or sigmoid in [0, 1].
    With n_classes, a label embedding is concatenated to z (a conditional GAN, Mirza & Osindero 2014)."""

    def __init__(self, z_dim: int = 32, width: int = 64, n_classes: int = 0, tanh: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.z_dim, self.n_classes, self.tanh = z_dim, n_classes, tanh
        self.embed = nn.Embedding(n_classes, 16) if n_classes else None
        self.project = nn.Sequential(nn.Linear(z_dim + (16 if n_classes else 0), 2 * width * 4),
                                     nn.BatchNorm1d(2 * width * 4), nn.ReLU())
        self.body = nn.Sequential(  # (B, 2w, 2, 2) -> (B, w, 4, 4) -> (B, 1, 8, 8)
            nn.Dropout(dropout), nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.BatchNorm2d(width),
            nn.ReLU(), nn.Dropout(dropout), nn.ConvTranspose2d(width, 1, 4, 2, 1),
        )
        self.width = width

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            if y is None:
                raise ValueError("this generator is conditional: pass the labels y")
            z = torch.cat([z, self.embed(y)], 1)
        h = self.project(z).view(-1, 2 * self.width, 2, 2)
        out = self.body(h)
        return torch.tanh(out) if self.tanh else torch.sigmoid(out)


class Discriminator(nn.Module):
    """Convolutional discriminator for (B, 1, 8, 8): returns logits (B,). `leaky` uses LeakyReLU(0.2)
    (else ReLU); `pool` downsamples with 'stride' (DCGAN), 'avg' or 'max' pooling; `minibatch`
    adds minibatch-discrimination features; with n_classes the label is a projection term
    (Miyato & Koyama 2018) so D judges (image, label) pairs."""

    def __init__(self, width: int = 64, leaky: bool = True, pool: str = "stride", n_classes: int = 0,
                 minibatch: bool = False) -> None:
        super().__init__()
        act = (lambda: nn.LeakyReLU(0.2)) if leaky else nn.ReLU

        def down(a: int, b: int) -> list[nn.Module]:
            if pool == "stride":
                return [nn.Conv2d(a, b, 4, 2, 1), act()]
            if pool not in ("avg", "max"):
                raise ValueError(f"pool must be 'stride', 'avg' or 'max', got {pool!r}")
            return [nn.Conv2d(a, b, 3, 1, 1), act(), nn.AvgPool2d(2) if pool == "avg" else nn.MaxPool2d(2)]

        self.body = nn.Sequential(*down(1, width), *down(width, 2 * width), nn.Flatten())  # (B, 8w)
        features = 2 * width * 4
        self.minibatch = MinibatchDiscrimination(features) if minibatch else None
        self.head = nn.Linear(self.minibatch.out_features if minibatch else features, 1)
        self.embed = nn.Embedding(n_classes, features) if n_classes else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.body(x)
        if self.minibatch is not None:
            h = self.minibatch(h)
        logits = self.head(h).squeeze(1)
        if self.embed is not None:
            if y is None:
                raise ValueError("this discriminator is conditional: pass the labels y")
            logits = logits + (self.embed(y) * h[:, : self.embed.embedding_dim]).sum(1)
        return logits


# --- Training ----------------------------------------------------------------------------------


@dataclass
class Tricks:
    """The lecture's list of GAN tricks, each a switch. The defaults are the recommended setting."""

    tanh: bool = True  # data in [-1, 1] and a tanh output (else [0, 1] and a sigmoid)
    non_saturating: bool = True  # G minimizes -log D(G(z)) (else log(1 - D(G(z))))
    gaussian_z: bool = True  # z ~ N(0, I) (else uniform on [-1, 1])
    separate_batches: bool = True  # D sees an all-real and an all-fake batch (else one mixed batch)
    leaky: bool = True  # LeakyReLU in D (else ReLU)
    pool: str = "stride"  # how D downsamples: 'stride' (DCGAN), 'avg' or 'max'
    label_smoothing: float = 0.0  # real label 1 - s for D (one-sided, Salimans et al. 2016)
    sgd_for_d: bool = False  # SGD with momentum for D (else Adam, like G)
    instance_noise: float = 0.0  # std of noise added to D's inputs, decaying linearly to 0
    g_dropout: float = 0.0  # dropout in G, kept on when sampling
    conditional: bool = False  # labels given to G and D
    minibatch: bool = False  # minibatch discrimination in D
    d_steps: int = 1  # k discriminator steps per generator step (Algorithm 1)


@dataclass
class GAN:
    """A generator, a discriminator and the tricks they are trained with. `images` marks a GAN of
    8x8 digits, whose data live in [-1, 1] when tricks.tanh (else [0, 1]); 2-D GANs use data as is."""

    G: nn.Module
    D: nn.Module
    tricks: Tricks
    z_dim: int
    images: bool = False
    history: dict[str, list[float]] = field(default_factory=dict)
    G_ema: nn.Module | None = None  # an exponential moving average of G's weights, if trained with one

    def averaged(self) -> GAN:
        """The same GAN with the averaged generator in place of G (train_gan with ema > 0)."""
        if self.G_ema is None:
            raise ValueError("this GAN was trained without an average of G: train_gan(..., ema=0.99)")
        return replace(self, G=self.G_ema)

    def to(self, device: torch.device | str) -> GAN:
        """G, D (and the average of G) moved to `device`, as nn.Module.to does; returns the GAN."""
        for net in (self.G, self.D, self.G_ema):
            if net is not None:
                net.to(device)
        return self

    def sample_z(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = system.device_of(self.G)
        if self.tricks.gaussian_z:
            return torch.randn(n, self.z_dim, generator=generator).to(device)
        return (2 * torch.rand(n, self.z_dim, generator=generator) - 1).to(device)

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 - 1 if self.images and self.tricks.tanh else x

    def from_model(self, x: torch.Tensor) -> torch.Tensor:
        return ((x + 1) / 2).clamp(0, 1) if self.images and self.tricks.tanh else x

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        """n samples in data space (digits in [0, 1]), G in eval mode except for dropout when
        tricks.g_dropout (the trick keeps it on at test time)."""
        if self.tricks.conditional and y is None:
            y = torch.arange(n, device=system.device_of(self.G)) % self.G.n_classes
        self.G.eval()
        for m in self.G.modules():
            if isinstance(m, nn.Dropout):
                m.train()
        x = _call(self.G, self.sample_z(n, generator), y)
        self.G.eval()
        return self.from_model(x)


def _call(net: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    return net(x) if y is None else net(x, y)


def digit_gan(tricks: Tricks | None = None, z_dim: int = 32, width: int = 32, classes: int = 10) -> GAN:
    """A DCGAN-style G and D for 8x8 digits, built as the tricks say; a conditional one reads
    labels in range(classes): digits, or clusters found without labels (a self-conditioned GAN)."""
    tricks = tricks or Tricks()
    if tricks.conditional and classes < 1:
        raise ValueError(f"a conditional GAN needs at least one class, got {classes}")
    n_classes = classes if tricks.conditional else 0
    G = Generator(z_dim, width, n_classes, tanh=tricks.tanh, dropout=tricks.g_dropout)
    D = Discriminator(width, tricks.leaky, tricks.pool, n_classes, tricks.minibatch)
    return GAN(G, D, tricks, z_dim, images=True)


class _Critic2D(nn.Module):
    def __init__(self, hidden: int, leaky: bool, minibatch: bool) -> None:
        super().__init__()
        act = (lambda: nn.LeakyReLU(0.2)) if leaky else nn.ReLU
        self.body = nn.Sequential(nn.Linear(2, hidden), act(), nn.Linear(hidden, hidden), act())
        self.minibatch = MinibatchDiscrimination(hidden) if minibatch else None
        self.head = nn.Linear(self.minibatch.out_features if minibatch else hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        return self.head(self.minibatch(h) if self.minibatch is not None else h).squeeze(1)


def point_gan(tricks: Tricks | None = None, z_dim: int = 2, hidden: int = 128) -> GAN:
    """MLP G and D for 2-D points (three layers each)."""
    tricks = tricks or Tricks()
    G = mlp([z_dim, hidden, hidden, 2], dropout=tricks.g_dropout)
    return GAN(G, _Critic2D(hidden, tricks.leaky, tricks.minibatch), tricks, z_dim)


def train_gan(gan: GAN, data: torch.Tensor, labels: torch.Tensor | None = None, steps: int = 1000,
              batch_size: int = 64, lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999),
              wgan_gp: float = 0.0, d_lr: float | None = None, g_sgd: bool = False, seed: int = 0,
              monitor: Callable[[GAN], dict[str, float]] | None = None, every: int = 100,
              ema: float = 0.0, desc: str = "GAN") -> GAN:
    """Algorithm 1 of Goodfellow et al. (2014): per generator step, tricks.d_steps discriminator
    steps, each on a fresh batch of data (given in data space) and of fakes. With wgan_gp > 0, D
    is a Wasserstein critic with that gradient-penalty weight (WGAN-GP). Records per step D's and
    G's losses and D's mean output on real and fake batches, and every `every` steps the numbers
    monitor(gan) returns (with G in eval mode); returns the trained GAN. d_lr defaults to lr; g_sgd
    trains G with plain SGD (whose steps are proportional to the gradient) instead of Adam. With
    ema > 0, gan.G_ema is also kept: after each G step, theta_ema <- ema theta_ema + (1 - ema) theta,
    batch-norm statistics included (Karras et al. 2018; Yazici et al. 2019); see GAN.averaged.
    The data and labels are moved once to the device of G's parameters."""
    tricks = gan.tricks
    if tricks.conditional:
        if labels is None:
            raise ValueError("a conditional GAN needs the labels")
        classes, low, high = getattr(gan.G, "n_classes", 0), labels.min().item(), labels.max().item()
        if len(labels) != len(data) or low < 0 or high >= classes:
            raise ValueError(f"a conditional GAN needs one label in range({classes}) per data point, "
                             f"got {len(labels)} labels in [{low}, {high}] for {len(data)} points")
    if steps < 1 or tricks.d_steps < 1:
        raise ValueError("steps and tricks.d_steps must be at least 1")
    if not 0 <= ema < 1:
        raise ValueError(f"ema is a decay in [0, 1), got {ema}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    G, D = gan.G, gan.D
    G.train()
    D.train()
    average = torch.optim.swa_utils.AveragedModel(
        G, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(ema), use_buffers=True) if ema else None
    opt_g = torch.optim.SGD(G.parameters(), lr) if g_sgd else torch.optim.Adam(G.parameters(), lr, betas=betas)
    d_lr = lr if d_lr is None else d_lr
    opt_d = (torch.optim.SGD(D.parameters(), lr=10 * d_lr, momentum=0.9) if tricks.sgd_for_d
             else torch.optim.Adam(D.parameters(), d_lr, betas=betas))
    device = system.device_of(G)  # the data go where the model is: one copy, not one per batch
    data = gan.to_model(data).to(device)
    labels = labels.to(device) if labels is not None else None
    real_label = 1.0 - tricks.label_smoothing
    gan.history = history = {"d_loss": [], "g_loss": [], "d_real": [], "d_fake": []}
    start = time.perf_counter()
    bar = tqdm(total=steps, desc=desc, disable=system.is_quiet(), file=sys.stderr, leave=False)

    def batch() -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = torch.randint(0, len(data), (batch_size,), generator=gen).to(device)
        return data[idx], labels[idx] if tricks.conditional else None

    for step in range(steps):
        noise = tricks.instance_noise * (1 - step / steps)
        for _ in range(tricks.d_steps):
            x, y = batch()
            with torch.no_grad():
                fake = _call(G, gan.sample_z(batch_size, gen), y)
            x, fake = x + noise * torch.randn_like(x), fake + noise * torch.randn_like(fake)
            if tricks.separate_batches or wgan_gp:
                real_logits, fake_logits = _call(D, x, y), _call(D, fake, y)
            else:
                both = _call(D, torch.cat([x, fake]), None if y is None else torch.cat([y, y]))
                real_logits, fake_logits = both[:batch_size], both[batch_size:]
            if wgan_gp:
                penalty = gradient_penalty(lambda v: _call(D, v, y), x, fake, gen)
                d_loss = fake_logits.mean() - real_logits.mean() + wgan_gp * penalty
            else:
                d_loss = discriminator_loss(real_logits, fake_logits, real_label)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        _, y = batch()
        fake = _call(G, gan.sample_z(batch_size, gen), y)
        fake_logits = _call(D, fake + noise * torch.randn_like(fake), y)
        g_loss = -fake_logits.mean() if wgan_gp else generator_loss(fake_logits, not tricks.non_saturating)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        if average is not None:
            average.update_parameters(G)
        if not torch.isfinite(g_loss):
            bar.close()
            raise FloatingPointError(f"the generator's loss became {g_loss.item()} at step {step}: lower lr")
        history["d_loss"].append(d_loss.item())
        history["g_loss"].append(g_loss.item())
        history["d_real"].append(torch.sigmoid(real_logits).mean().item())
        history["d_fake"].append(torch.sigmoid(fake_logits).mean().item())
        if monitor is not None and ((step + 1) % every == 0 or step == 0):
            history.setdefault("step", []).append(step + 1)
            for key, value in monitor(gan).items():
                history.setdefault(key, []).append(float(value))
            G.train()
        bar.update()
    bar.close()
    history["seconds"] = [time.perf_counter() - start]
    G.eval()
    D.eval()
    if average is not None:
        gan.G_ema = average.module.eval()
    return gan
