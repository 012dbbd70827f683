"""Variational autoencoders and the evidence lower bound (Kingma & Welling 2014).

log p(x) >= E_q(z|x)[log p(x|z)] - KL(q(z|x) || p(z)) = ELBO, with equality iff q(z|x) = p(z|x).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import system

LOG_2PI = math.log(2 * math.pi)


def gaussian_kl(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(log_var))) || N(0, I)) per row: mu, log_var (..., d) -> (...).

    1/2 sum_j (sigma_j^2 + mu_j^2 - log sigma_j^2 - 1)   (Kingma & Welling 2014, appendix B)
    """
    return 0.5 * (log_var.exp() + mu.pow(2) - log_var - 1).sum(-1)


def reparameterize(mu: torch.Tensor, log_var: torch.Tensor, eps: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mu + sigma * eps with sigma = exp(log_var / 2) and eps ~ N(0, I): a sample of
    N(mu, sigma^2) that is a differentiable function of mu and log_var."""
    if eps is None:
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
    return mu + (0.5 * log_var).exp() * eps


def gaussian_log_prob(z: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(log_var))) summed over the last dimension."""
    return -0.5 * (LOG_2PI + log_var + (z - mu).pow(2) / log_var.exp()).sum(-1)


def binarize(x: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Fixed binarization of images in [0, 1]: 1 where the pixel exceeds the threshold."""
    return (x > threshold).to(x.dtype)


class VAE(nn.Module):
    """An MLP VAE for binary images (B, 1, side, side): a Gaussian encoder q(z|x) that outputs
    (mu, log_var), a standard normal prior, and a Bernoulli decoder p(x|z) that outputs logits."""

    def __init__(self, latent: int = 8, hidden: int = 256, side: int = 8) -> None:
        super().__init__()
        D = side * side
        self.side, self.latent = side, latent
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(D, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                     nn.ReLU(), nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                     nn.Linear(hidden, D))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 1, side, side) -> mu (B, latent), log_var (B, latent)."""
        mu, log_var = self.encoder(x).chunk(2, dim=-1)
        return mu, log_var

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes (B, latent) -> Bernoulli logits (B, 1, side, side)."""
        return self.decoder(z).view(-1, 1, self.side, self.side)

    def sample(self, n: int, generator: torch.Generator | None = None, prior: CodeMixture | None = None
               ) -> torch.Tensor:
        """Pixel probabilities (n, 1, side, side) decoded from z ~ N(0, I), or from z ~ prior."""
        with torch.no_grad():
            z = (torch.randn(n, self.latent, generator=generator) if prior is None
                 else prior.sample(n, generator))
            return torch.sigmoid(self.decode(z.to(system.device_of(self))))


@dataclass(frozen=True)
class CodeMixture:
    """sum_k w_k N(means_k, L_k L_k^T) over codes (d,): a density fitted to a trained model's codes
    after training (ex-post density estimation, Ghosh et al. 2020). Sampled in place of N(0, I),
    it puts the codes where the encoder put the data, not in the regions of the prior that the
    aggregate posterior leaves empty (Hoffman & Johnson 2016)."""

    weights: torch.Tensor  # (K,)
    means: torch.Tensor  # (K, d)
    scale_tril: torch.Tensor  # (K, d, d): lower Cholesky factors of the covariances

    @classmethod
    def fit(cls, codes: torch.Tensor, k: int = 20, seed: int = 0) -> CodeMixture:
        """Maximum likelihood by EM (scikit-learn's GaussianMixture, full covariances) on codes (N, d)."""
        from sklearn.mixture import GaussianMixture

        gm = GaussianMixture(k, covariance_type="full", random_state=seed).fit(codes.detach().cpu().double().numpy())
        as_codes = lambda a: torch.as_tensor(a).to(codes.device, codes.dtype)  # noqa: E731
        return cls(as_codes(gm.weights_), as_codes(gm.means_),
                   as_codes(torch.linalg.cholesky(torch.as_tensor(gm.covariances_))))

    def distribution(self) -> torch.distributions.MixtureSameFamily:
        return torch.distributions.MixtureSameFamily(
            torch.distributions.Categorical(probs=self.weights),
            torch.distributions.MultivariateNormal(self.means, scale_tril=self.scale_tril))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n codes (n, d): a component k ~ w, then means_k + L_k eps with eps ~ N(0, I)."""
        k = torch.multinomial(self.weights.cpu(), n, replacement=True, generator=generator).to(self.means.device)
        eps = torch.randn(n, self.means.shape[1], 1, generator=generator, dtype=self.means.dtype)
        return self.means[k] + (self.scale_tril[k] @ eps.to(self.means.device)).squeeze(-1)


def negative_elbo(model: VAE, x: torch.Tensor, generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The two terms of -ELBO per image, each summed over its pixels or latents, with one
    reparameterized sample: reconstruction -log p(x|z) (B,) and KL(q(z|x) || p(z)) (B,)."""
    mu, log_var = model.encode(x)
    z = reparameterize(mu, log_var, generator=generator)
    logits = model.decode(z)
    reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    return reconstruction, gaussian_kl(mu, log_var)


def vae_loss(model: VAE, x: torch.Tensor, beta: float = 1.0, generator: torch.Generator | None = None
             ) -> torch.Tensor:
    """Mean over the batch of reconstruction + beta * KL (beta = 1: the negative ELBO)."""
    reconstruction, kl = negative_elbo(model, x, generator)
    return (reconstruction + beta * kl).mean()


@torch.no_grad()
def importance_weighted_bound(model: VAE, x: torch.Tensor, k: int, generator: torch.Generator | None = None
                              ) -> torch.Tensor:
    """log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x), per image (B,) (Burda et al. 2016):
    the ELBO at k = 1, rising towards log p(x) as k grows."""
    mu, log_var = model.encode(x)  # (B, d)
    z = reparameterize(mu.expand(k, *mu.shape), log_var.expand(k, *mu.shape), generator=generator)  # (k, B, d)
    logits = model.decode(z.flatten(0, 1)).view(k, *x.shape)  # (k, B, 1, side, side)
    log_px_z = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").flatten(2).sum(-1)
    log_pz = gaussian_log_prob(z, torch.zeros_like(z), torch.zeros_like(z))
    log_w = log_px_z + log_pz - gaussian_log_prob(z, mu, log_var)  # (k, B)
    return torch.logsumexp(log_w, 0) - math.log(k)


def log_likelihood(model: VAE, x: torch.Tensor, k: int = 1000, chunk: int = 100,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """log p(x) per image (B,), estimated by the importance-weighted bound with k samples."""
    return torch.cat([importance_weighted_bound(model, x[i:i + chunk], k, generator) for i in range(0, len(x), chunk)])


# --- A latent-variable model whose evidence is exact: the linear-Gaussian model ----------------


@dataclass
class LinearGaussian:
    """p(z) = N(0, I_d), p(x|z) = N(W z + b, sigma^2 I_D), W (D, d): factor analysis with equal
    noise, probabilistic PCA (Tipping & Bishop 1999). Its evidence and posterior are Gaussian:
    p(x) = N(b, W W^T + sigma^2 I), p(z|x) = N(S W^T (x - b) / sigma^2, S), S = (I + W^T W / sigma^2)^-1."""

    W: torch.Tensor
    b: torch.Tensor
    sigma: float

    def log_evidence(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) for x (B, D) -> (B,)."""
        D = self.W.shape[0]
        cov = self.W @ self.W.T + self.sigma ** 2 * torch.eye(D, dtype=self.W.dtype)
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(x)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (B, d) and covariance (d, d) of p(z|x)."""
        d = self.W.shape[1]
        S = torch.linalg.inv(torch.eye(d, dtype=self.W.dtype) + self.W.T @ self.W / self.sigma ** 2)
        return (x - self.b) @ self.W @ S / self.sigma ** 2, S

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x, z) = log p(x|z) + log p(z) for x (..., D), z (..., d) -> (...)."""
        mean = z @ self.W.T + self.b
        log_px_z = gaussian_log_prob(x, mean, torch.full_like(mean, 2 * math.log(self.sigma)))
        return log_px_z + gaussian_log_prob(z, torch.zeros_like(z), torch.zeros_like(z))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws of x (n, D) from p(x)."""
        D, d = self.W.shape
        z = torch.randn(n, d, generator=generator, dtype=self.W.dtype)
        return z @ self.W.T + self.b + self.sigma * torch.randn(n, D, generator=generator, dtype=self.W.dtype)
