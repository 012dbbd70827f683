"""Numbers that say whether a model worked."""
from __future__ import annotations

import math

import torch
from torch import nn

from . import system


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


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """2 E|X - Y| - E|X - X'| - E|Y - Y'| for two samples of points (n, d), (m, d) (Szekely &
    Rizzo 2013): zero iff the distributions are equal. Compare against the same statistic for
    two independent samples of the data, the floor that finite samples leave."""
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"energy_distance needs two (n, d) samples of the same d, got {tuple(x.shape)} and {tuple(y.shape)}")
    x, y = x.double(), y.double()
    return (2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean()).item()


def roc_auc(scores_negative: torch.Tensor, scores_positive: torch.Tensor) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a random
    negative, ties counting one half (the Mann-Whitney U statistic divided by n_neg * n_pos)."""
    neg, pos = scores_negative.flatten().double(), scores_positive.flatten().double()
    if len(neg) == 0 or len(pos) == 0:
        raise ValueError("roc_auc needs at least one negative and one positive score")
    greater = (pos[:, None] > neg[None, :]).double().mean()
    ties = (pos[:, None] == neg[None, :]).double().mean()
    return (greater + 0.5 * ties).item()


# --- The judge: one digit classifier that scores every generative model of the course ------


LEGIBLE = 0.9  # the judge's confidence above which a sample counts as a legible digit


class DigitJudge(nn.Module):
    """A small CNN for 8x8 digits (B, 1, 8, 8) in [0, 1]; `features` gives the (B, 128)
    penultimate activations in which `fid` measures a Frechet distance, a digits analogue of
    FID (Heusel et al. 2017), whose Inception network sees ImageNet photographs instead."""

    def __init__(self, width: int = 32, n_features: int = 128) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(),  # (B, 2 width, 4, 4) -> (B, 32 width)
            nn.Linear(2 * width * 16, n_features), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(n_features, 10))
        self.reference: tuple[torch.Tensor, torch.Tensor] | None = None  # statistics of the test images
        self.test_accuracy = float("nan")
        self.floor = float("nan")  # Frechet distance between real training and real test images
        self.ceiling = float("nan")  # share of the real test digits that are legible (see `legible`)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def _own(self, images: torch.Tensor) -> torch.Tensor:
        """Digit images, checked, as float32 on the judge's device (samples may come from a GPU)."""
        _check_digit_images(images)
        return images.float().to(system.device_of(self))

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        self.eval()
        return self.body(self._own(images))

    def fid(self, images: torch.Tensor, reference: torch.Tensor | None = None) -> float:
        """Frechet distance between the features of `images` and those of the test digits (or
        of the `reference` images, for example binarized ones). Compare sample sets of the test
        set's size (450): the estimate grows as n shrinks."""
        if reference is not None:
            return frechet_distance(*gaussian_stats(self.features(images)), *gaussian_stats(self.features(reference)))
        if self.reference is None:
            raise RuntimeError("the judge has no reference statistics: build it with train_judge")
        return frechet_distance(*gaussian_stats(self.features(images)), *self.reference)

    @torch.no_grad()
    def legible(self, images: torch.Tensor, threshold: float = LEGIBLE) -> float:
        """The share of `images` the judge reads as one digit with probability at least
        `threshold`: "recognizable" as a number. Compare it with `ceiling`, the same share of
        the real test digits (a digit drawn ambiguously is not legible to the judge either)."""
        self.eval()
        return (torch.softmax(self(self._own(images)), -1).amax(-1) >= threshold).float().mean().item()

    @torch.no_grad()
    def inception_score(self, images: torch.Tensor) -> float:
        """exp E_x KL(p(y|x) || p(y)) (Salimans et al. 2016): between 1 and 10 classes here."""
        self.eval()
        p = torch.softmax(self(self._own(images)).double(), -1)
        kl = (p * (p.clamp_min(1e-12).log() - p.mean(0).clamp_min(1e-12).log())).sum(-1)
        return math.exp(kl.mean().item())


def _check_digit_images(images: torch.Tensor) -> None:
    if images.dim() != 4 or tuple(images.shape[1:]) != (1, 8, 8):
        raise ValueError(f"the judge reads digit images of shape (B, 1, 8, 8), got {tuple(images.shape)}")
    if images.min() < -1e-3 or images.max() > 1 + 1e-3:
        raise ValueError("the judge reads pixel values in [0, 1]: map samples in [-1, 1] with (x + 1) / 2")


def random_shift(x: torch.Tensor, generator: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Each image of (B, C, H, W) moved by up to max_shift pixels in each direction, zero-filled."""
    B, C, H, W = x.shape
    s = max_shift
    padded = nn.functional.pad(x, (s, s, s, s))
    dy, dx = (torch.randint(0, 2 * s + 1, (B,), generator=generator) for _ in range(2))
    rows = (dy[:, None] + torch.arange(H))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx[:, None] + torch.arange(W))[:, None, None, :]  # (B, 1, 1, W)
    return padded[torch.arange(B)[:, None, None, None], torch.arange(C)[None, :, None, None], rows, cols]


def train_judge(digits, epochs: int = 10, seed: int = 0) -> DigitJudge:
    """Train the judge on the training digits (shifted by up to a pixel, one-cycle learning
    rate); store its test accuracy, the test features' statistics and the real-vs-real floor."""
    from . import data

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    judge = DigitJudge()
    loader = data.make_loader(digits.x_train, digits.y_train, batch_size=64, seed=seed)
    optimizer = torch.optim.Adam(judge.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 3e-3, total_steps=epochs * len(loader))
    for _ in range(epochs):
        judge.train()
        for x, y in loader:
            loss = nn.functional.cross_entropy(judge(random_shift(x, generator)), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    judge.eval()
    with torch.no_grad():
        judge.test_accuracy = accuracy(judge(digits.x_test), digits.y_test)
    judge.reference = gaussian_stats(judge.features(digits.x_test))
    judge.floor = judge.fid(digits.x_train[: len(digits.x_test)])
    judge.ceiling = judge.legible(digits.x_test)
    return judge
