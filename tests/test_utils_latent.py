"""utils.autoencoder, utils.vae, utils.vq and the judge, against references and closed forms."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.linalg import subspace_angles
from sklearn.metrics import roc_auc_score
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from utils import autoencoder, data, metrics, vae, vq


def test_roc_auc_matches_sklearn_with_ties():
    g = torch.Generator().manual_seed(0)
    neg, pos = torch.randint(0, 5, (40,), generator=g).float(), torch.randint(2, 8, (30,), generator=g).float()
    expected = roc_auc_score(np.r_[np.zeros(40), np.ones(30)], np.r_[neg.numpy(), pos.numpy()])
    assert metrics.roc_auc(neg, pos) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError):
        metrics.roc_auc(torch.tensor([]), pos)


def test_principal_angles_match_scipy_and_pca_basis_is_orthonormal():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(10, 3, generator=g), torch.randn(10, 3, generator=g)
    expected = np.sort(subspace_angles(a.double().numpy(), b.double().numpy()))
    assert torch.allclose(autoencoder.principal_angles(a, b), torch.from_numpy(expected), atol=1e-8)
    assert torch.allclose(autoencoder.principal_angles(a, a @ torch.randn(3, 3, generator=g)), torch.zeros(3, dtype=torch.float64), atol=1e-6)
    x = torch.randn(200, 6, generator=g) @ torch.diag(torch.tensor([5.0, 3, 2, 1, 0.5, 0.1]))
    basis = autoencoder.pca_basis(x, 2)
    assert torch.allclose(basis.T @ basis, torch.eye(2, dtype=torch.float64), atol=1e-10)
    cov = torch.cov(x.T.double())
    top = torch.linalg.eigh(cov).eigenvectors[:, -2:]
    assert autoencoder.principal_angles(basis, top).max() < 1e-6


def test_corrupt_checkerboard_and_thicken():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(500, 1, 8, 8, generator=g)
    masked = autoencoder.corrupt(x, "mask", 0.3, g)
    zeroed = (masked == 0) & (x > 0)
    assert 0.27 < zeroed.float().mean() < 0.33 and torch.equal(masked[~zeroed], x[~zeroed])
    noisy = autoencoder.corrupt(x, "gaussian", 0.1, g)
    assert noisy.min() >= 0 and noisy.max() <= 1
    with pytest.raises(ValueError):
        autoencoder.corrupt(x, "salt", 0.1)
    board = torch.tensor([[(i + j) % 2 for j in range(8)] for i in range(8)], dtype=torch.float32)
    assert autoencoder.checkerboard(board[None, None]).item() > 0.5
    assert autoencoder.checkerboard(torch.full((1, 1, 8, 8), 0.7)).item() == 0
    dot = torch.zeros(1, 1, 4, 4)
    dot[0, 0, 1, 1] = 1
    thick = data.thicken(dot)[0, 0]
    assert thick.sum() == 4 and thick[0, 0] == 1 and thick[1, 1] == 1 and thick[2, 2] == 0


def test_gaussian_kl_and_reparameterization():
    g = torch.Generator().manual_seed(3)
    mu, log_var = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64)
    reference = kl_divergence(Normal(mu, (0.5 * log_var).exp()), Normal(0.0, 1.0)).sum(-1)
    assert torch.allclose(vae.gaussian_kl(mu, log_var), reference, atol=1e-12)
    z = vae.reparameterize(mu, log_var, eps=torch.ones_like(mu))
    assert torch.allclose(z, mu + (0.5 * log_var).exp())
    assert torch.allclose(vae.gaussian_log_prob(z, mu, log_var), Normal(mu, (0.5 * log_var).exp()).log_prob(z).sum(-1))


def test_iw_bound_is_the_elbo_at_k1_and_rises_with_k():
    torch.manual_seed(0)
    model = vae.VAE(latent=2, hidden=32)
    x = vae.binarize(data.load_digits().x_test[:20])
    recon, kl = vae.negative_elbo(model, x, generator=torch.Generator().manual_seed(5))
    k1 = vae.importance_weighted_bound(model, x, 1, generator=torch.Generator().manual_seed(5))
    # same generator, same eps: the one-sample bound is log p(x|z) + log p(z) - log q(z|x)
    mu, log_var = model.encode(x)
    z = vae.reparameterize(mu, log_var, generator=torch.Generator().manual_seed(5))
    one_sample = -recon + vae.gaussian_log_prob(z, torch.zeros_like(z), torch.zeros_like(z)) - vae.gaussian_log_prob(z, mu, log_var)
    assert torch.allclose(k1, one_sample.detach(), atol=1e-4)
    # E[log p(z) - log q(z|x)] = -KL: the bound at k = 1 averages to the ELBO
    many = torch.stack([vae.importance_weighted_bound(model, x, 1, torch.Generator().manual_seed(s)) for s in range(300)])
    assert torch.allclose(many.mean(0), -(recon + kl).detach(), atol=0.5)
    k100 = vae.log_likelihood(model, x, k=100, chunk=7, generator=torch.Generator().manual_seed(6))
    assert (k100.mean() > many.mean()).item()


def test_code_mixture_is_sklearns_fit_and_samples_its_moments():
    """The fitted density is scikit-learn's, term for term; its sampler draws the mixture's mean
    and covariance (sum_k w_k (C_k + m_k m_k^T) - m m^T) within Monte-Carlo error."""
    from sklearn.mixture import GaussianMixture

    g = torch.Generator().manual_seed(0)
    codes = torch.cat([torch.randn(300, 3, generator=g) * 0.3 + 2, torch.randn(600, 3, generator=g) @ torch.tensor(
        [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.3, 0.2]]) - 1]).double()
    mixture = vae.CodeMixture.fit(codes, k=2, seed=0)
    reference = GaussianMixture(2, covariance_type="full", random_state=0).fit(codes.numpy())
    assert np.allclose(mixture.distribution().log_prob(codes).numpy(), reference.score_samples(codes.numpy()))
    assert sorted(mixture.weights.tolist()) == pytest.approx([1 / 3, 2 / 3], abs=0.01)
    z = mixture.sample(200_000, torch.Generator().manual_seed(1))
    w, m, L = mixture.weights, mixture.means, mixture.scale_tril
    mean = (w[:, None] * m).sum(0)
    cov = (w[:, None, None] * (L @ L.transpose(1, 2) + m[:, :, None] * m[:, None, :])).sum(0) - mean[:, None] * mean
    se = (cov.diagonal() / len(z)).sqrt()
    assert ((z.mean(0) - mean).abs() < 5 * se).all()
    assert torch.allclose(z.T.cov(), cov, atol=0.03)
    model = vae.VAE(latent=3, hidden=8).double()
    expected = torch.sigmoid(model.decode(mixture.sample(4, torch.Generator().manual_seed(2)))).detach()
    assert torch.equal(model.sample(4, torch.Generator().manual_seed(2), prior=mixture), expected)


def test_linear_gaussian_evidence_and_posterior_by_bayes_rule():
    g = torch.Generator().manual_seed(7)
    model = vae.LinearGaussian(torch.randn(4, 2, generator=g, dtype=torch.float64),
                               torch.randn(4, generator=g, dtype=torch.float64), sigma=0.7)
    x = model.sample(3, generator=g)
    mean, cov = model.posterior(x)
    z = torch.randn(3, 2, generator=g, dtype=torch.float64)
    # Bayes: log p(z|x) = log p(x, z) - log p(x), for any z
    log_post = MultivariateNormal(mean, cov).log_prob(z)
    assert torch.allclose(log_post, model.log_joint(x, z) - model.log_evidence(x), atol=1e-10)
    samples = model.sample(200_000, generator=g)
    assert torch.allclose(torch.cov(samples.T), model.W @ model.W.T + 0.49 * torch.eye(4, dtype=torch.float64), atol=0.05)


def test_vector_quantizer_lookup_losses_and_ema():
    torch.manual_seed(0)
    quantizer = vq.VectorQuantizer(K=6, D=3, init="random")
    z_e = torch.randn(2, 3, 4, 4, requires_grad=True)
    z_q, codes, loss = quantizer(z_e)
    flat = z_e.detach().permute(0, 2, 3, 1).reshape(-1, 3)
    assert torch.equal(codes.flatten(), torch.cdist(flat, quantizer.codebook.detach()).argmin(1))
    e = quantizer.codebook.detach()[codes.flatten()]
    expected = F.mse_loss(e, flat) * 1.25  # codebook + 0.25 commitment, equal in value
    assert torch.allclose(loss, expected)
    (z_q * 3).sum().backward()
    assert torch.allclose(z_e.grad, torch.full_like(z_e, 3.0)), "straight-through: identity gradient"
    ema = vq.VectorQuantizer(K=3, D=2, ema=True, decay=0.5, eps=0.0, init="random")
    start = ema.codebook.clone()
    points = torch.randn(1, 2, 5, 5)
    _, assigned, _ = ema(points)
    flat = points.permute(0, 2, 3, 1).reshape(-1, 2)
    for k in range(3):
        n_k = (assigned.flatten() == k).sum()
        cluster = 0.5 + 0.5 * n_k
        m_k = 0.5 * start[k] + 0.5 * flat[assigned.flatten() == k].sum(0)
        total = (0.5 * 3 + 0.5 * 25)
        smoothed = cluster / total * total
        assert torch.allclose(ema.codebook[k], m_k / smoothed, atol=1e-6)
    with pytest.raises(ValueError):
        quantizer(torch.randn(1, 4, 2, 2))


def test_residual_vq_error_falls_with_depth_and_decode_codes_agrees():
    torch.manual_seed(0)
    rq = vq.ResidualVQ(depth=3, K=16, D=2, ema=True)
    points = torch.randn(1, 2, 30, 30)
    for _ in range(20):  # let the EMA codebooks settle
        rq(points)
    rq.eval()
    errors = [F.mse_loss(rq(points, depth=d)[0], points).item() for d in (1, 2, 3)]
    assert errors[0] > errors[1] > errors[2]
    model = vq.VQVAE(K=8, depth=2)
    x = torch.rand(4, 1, 8, 8)
    model(x)  # initializes the codebooks from this batch
    model.eval()
    x_hat, codes, _ = model(x)
    assert codes.shape == (4, 2, 4, 4)
    assert torch.allclose(model.decode_codes(codes), x_hat, atol=1e-6)


def test_codebook_usage_code_prior_and_gumbel():
    used, perplexity = vq.codebook_usage(torch.tensor([0, 1, 2, 3] * 5), 8)
    assert used == 0.5 and perplexity == pytest.approx(4.0)
    torch.manual_seed(0)
    prior = vq.CodePrior(K=5, dim=8, hidden=16)
    codes = torch.randint(5, (3, 2, 2))
    seq = codes.flatten(1)
    logits, _ = prior.lstm(prior.embed(torch.cat([torch.full((3, 1), 5), seq[:, :-1]], 1)))
    manual = -torch.log_softmax(prior.head(logits), -1).gather(2, seq[..., None]).mean()
    assert torch.allclose(prior.loss(codes), manual)
    samples = prior.sample(7, (2, 2), generator=torch.Generator().manual_seed(0))
    assert samples.shape == (7, 2, 2) and samples.max() < 5
    logits = torch.tensor([1.0, 0.0, -1.0])
    y = vq.gumbel_softmax(logits.expand(200_000, 3), tau=0.7, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(y.sum(1), torch.ones(200_000))
    freq = torch.bincount(y.argmax(1), minlength=3) / 200_000
    assert torch.allclose(freq, torch.softmax(logits, 0), atol=5e-3)
    hard = vq.gumbel_softmax(logits.requires_grad_(True).expand(4, 3), tau=0.5, hard=True)
    assert set(hard.detach().flatten().tolist()) <= {0.0, 1.0}
    hard.mul(torch.arange(3.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_judge_scores_real_digits_close_and_noise_far():
    digits = data.load_digits()
    judge = metrics.train_judge(digits, epochs=4)
    assert judge.test_accuracy > 0.9
    noise = torch.rand(450, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert judge.floor < 10 < 50 < judge.fid(noise)
    assert 1 <= judge.inception_score(digits.x_test) <= 10
    assert judge.inception_score(digits.x_test) > 3 * judge.inception_score(digits.x_test[digits.y_test == 3])
    # legible: most real digits, few noise images, and the ceiling is the test digits' own share
    assert judge.legible(noise) < 0.1 < 0.3 < judge.legible(digits.x_test) == judge.ceiling
    with torch.no_grad():
        confident = torch.softmax(judge(digits.x_test[:20]), -1).amax(-1) >= metrics.LEGIBLE
    assert judge.legible(digits.x_test[:20]) == confident.float().mean().item()
    blend = (digits.x_test[digits.y_test == 1][:20] + digits.x_test[digits.y_test == 0][:20]) / 2
    assert judge.legible(blend) < judge.ceiling  # a 1 laid over a 0 is not a digit
    with pytest.raises(ValueError, match="0, 1"):
        judge.fid(digits.x_test * 2 - 1)
    with pytest.raises(ValueError, match="shape"):
        judge.fid(digits.x_test.view(-1, 64))
