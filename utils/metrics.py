"""Numbers that say whether a model worked."""
from __future__ import annotations

import math

import torch


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows whose arg-max matches the label: logits (N, C), y (N,)."""
    if logits.shape[0] != y.shape[0]:
        raise ValueError(f"{logits.shape[0]} predictions for {y.shape[0]} labels")
    return (logits.argmax(-1) == y).float().mean().item()


def nats_to_bits(nats: float) -> float:
    """A cross-entropy in nats expressed in bits (divide by ln 2)."""
    return nats / math.log(2)


def frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    """Squared Frechet (2-Wasserstein) distance between N(mu1, cov1) and N(mu2, cov2).

    ||mu1 - mu2||^2 + tr(cov1 + cov2 - 2 (cov1^1/2 cov2 cov1^1/2)^1/2)   (Dowson & Landau 1982),
    the formula behind FID (Heusel et al. 2017).
    """
    mu1, mu2, cov1, cov2 = (t.double() for t in (mu1, mu2, cov1, cov2))
    s1 = _sqrtm_psd(cov1)
    cross = _sqrtm_psd(s1 @ cov2 @ s1)
    value = (mu1 - mu2).pow(2).sum() + torch.trace(cov1 + cov2 - 2 * cross)
    return max(value.item(), 0.0)


def _sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix through its eigendecomposition."""
    evals, evecs = torch.linalg.eigh((a + a.T) / 2)
    return evecs @ torch.diag(evals.clamp(min=0).sqrt()) @ evecs.T


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D)."""
    return features.mean(0), torch.cov(features.T)
