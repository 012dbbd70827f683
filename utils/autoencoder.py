"""Autoencoders: an encoder phi and a decoder psi trained so that psi(phi(x)) is close to x.

argmin_{phi, psi} ||X - (psi o phi) X||^2   (lecture 9; Hinton & Salakhutdinov 2006)
"""
from __future__ import annotations

import torch
from torch import nn


class Autoencoder(nn.Module):
    """A fully connected autoencoder for images (B, 1, 8, 8) with a `latent`-dimensional code.

    With linear=True both maps are affine and it learns the principal subspace (Baldi & Hornik
    1989); otherwise each has one ReLU hidden layer and the decoder ends in a sigmoid.
    """

    def __init__(self, latent: int = 2, hidden: int = 128, linear: bool = False, side: int = 8) -> None:
        super().__init__()
        D = side * side
        self.side = side
        if linear:
            self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(D, latent))
            self.decoder = nn.Linear(latent, D)
        else:
            self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(D, hidden), nn.ReLU(), nn.Linear(hidden, latent))
            self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, D), nn.Sigmoid())

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes (B, latent) -> images (B, 1, side, side)."""
        return self.decoder(z).view(-1, 1, self.side, self.side)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encoder(x))


class ConvAutoencoder(nn.Module):
    """A convolutional autoencoder for (B, 1, 8, 8): two stride-2 convolutions down to a
    (B, channels, 2, 2) code, and back up either with transposed convolutions
    (upsample="transposed") or with nearest-neighbour upsampling followed by a convolution
    (upsample="nearest"), the fix for checkerboard artifacts of Odena et al. (2016)."""

    def __init__(self, channels: int = 8, width: int = 32, upsample: str = "transposed") -> None:
        super().__init__()
        if upsample not in ("transposed", "nearest"):
            raise ValueError(f"upsample must be 'transposed' or 'nearest', got {upsample!r}")
        self.encoder = nn.Sequential(
            nn.Conv2d(1, width, 3, stride=2, padding=1), nn.ReLU(),  # (B, width, 4, 4)
            nn.Conv2d(width, channels, 3, stride=2, padding=1),  # (B, channels, 2, 2)
        )
        self.decoder = nn.Sequential(
            up_block(channels, width, upsample), nn.ReLU(),  # (B, width, 4, 4)
            up_block(width, 1, upsample), nn.Sigmoid(),  # (B, 1, 8, 8)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def up_block(c_in: int, c_out: int, upsample: str) -> nn.Module:
    """Double the height and width: a 3x3 transposed convolution with stride 2 (whose
    kernel footprints overlap unevenly) or nearest upsampling then a 3x3 convolution."""
    if upsample == "transposed":
        return nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1)
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, padding=1))


def checkerboard(images: torch.Tensor) -> torch.Tensor:
    """How much an image (B, C, H, W) varies with the parity of its pixel coordinates: the
    spread of the four means over (even/odd row, even/odd column) phases, per image (B,)."""
    phases = torch.stack([images[..., i::2, j::2].mean((-3, -2, -1)) for i in (0, 1) for j in (0, 1)], -1)
    return phases.std(-1)


def corrupt(x: torch.Tensor, kind: str, level: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Corrupted copies of images x for a denoising autoencoder (Vincent et al. 2008):
    kind="gaussian" adds N(0, level^2) noise and clips to [0, 1]; kind="mask" sets each
    pixel to 0 with probability `level`."""
    if kind == "gaussian":
        return (x + level * torch.randn(x.shape, generator=generator).to(x.device)).clamp(0, 1)
    if kind == "mask":
        if not 0 <= level < 1:
            raise ValueError(f"a masking probability is in [0, 1), got {level}")
        return x * (torch.rand(x.shape, generator=generator).to(x.device) >= level)
    raise ValueError(f"kind must be 'gaussian' or 'mask', got {kind!r}")


def pca_basis(x: torch.Tensor, k: int) -> torch.Tensor:
    """The top-k principal directions of the rows of x (N, D), as orthonormal columns (D, k),
    computed in float64 on the CPU (Apple's MPS has no float64) and returned there."""
    centred = (x - x.mean(0)).detach().cpu().double()
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return vh[:k].T


def principal_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Principal angles (radians, ascending) between the column spaces of a (D, k) and b (D, k):
    arccos of the singular values of Q_a^T Q_b (Bjorck & Golub 1973); in float64, on the CPU."""
    qa, _ = torch.linalg.qr(a.detach().cpu().double())
    qb, _ = torch.linalg.qr(b.detach().cpu().double())
    cosines = torch.linalg.svdvals(qa.T @ qb).clamp(-1, 1)
    return torch.arccos(cosines)  # singular values descend, so the angles ascend


def reconstruction_error(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error per image (B,) between model(x) and target (x itself by default)."""
    target = x if target is None else target
    with torch.no_grad():
        return (model(x) - target).pow(2).flatten(1).mean(1)
