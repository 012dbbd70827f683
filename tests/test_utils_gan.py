"""utils.gan and metrics.energy_distance, against closed forms and PyTorch's own losses."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal

from utils import gan, metrics


def test_optimal_discriminator_maximizes_the_value_pointwise_and_jsd():
    a, b = torch.tensor([0.3, 2.0, 1.0]), torch.tensor([1.2, 0.5, 1.0])
    d_star = gan.optimal_discriminator(a, b)
    ys = torch.linspace(0.001, 0.999, 9999)[:, None]
    brute = ys[(a * ys.log() + b * (1 - ys).log()).argmax(0), 0]
    assert torch.allclose(d_star, brute, atol=2e-4)
    assert d_star[2] == 0.5  # equal densities
    xs = torch.linspace(-12, 12, 24_001, dtype=torch.float64)
    dx = (xs[1] - xs[0]).item()
    p = Normal(0.0, 1.0).log_prob(xs).exp()
    assert gan.js_divergence(p, p, dx) == pytest.approx(0.0, abs=1e-12)
    q_far = torch.where(xs > 6, torch.ones_like(xs) / 6, torch.zeros_like(xs))  # disjoint support
    assert gan.js_divergence(p * (xs < 6), q_far, dx) == pytest.approx(math.log(2), rel=1e-3)


def test_losses_equal_binary_cross_entropy_and_their_logit_gradients():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(7, generator=g), torch.randn(7, generator=g)
    expected = F.binary_cross_entropy(torch.sigmoid(real), torch.ones(7)) + F.binary_cross_entropy(
        torch.sigmoid(fake), torch.zeros(7))
    assert torch.allclose(gan.discriminator_loss(real, fake), expected, atol=1e-6)
    smoothed = F.binary_cross_entropy(torch.sigmoid(real), torch.full((7,), 0.9)) + F.binary_cross_entropy(
        torch.sigmoid(fake), torch.zeros(7))
    assert torch.allclose(gan.discriminator_loss(real, fake, real_label=0.9), smoothed, atol=1e-6)
    logits = torch.linspace(-30, 30, 61, requires_grad=True)
    (sat,) = torch.autograd.grad(gan.generator_loss(logits, saturating=True).sum() * 61, logits)
    (ns,) = torch.autograd.grad(gan.generator_loss(logits).sum() * 61, logits)
    d = torch.sigmoid(logits.detach())
    assert torch.allclose(sat, -d, atol=1e-6) and torch.allclose(ns, -(1 - d), atol=1e-6)
    assert torch.isfinite(gan.generator_loss(logits, saturating=True)) and torch.isfinite(gan.generator_loss(logits))


def test_gradient_penalty_is_exact_for_linear_critics_and_reaches_parameters():
    g = torch.Generator().manual_seed(1)
    w = torch.tensor([0.6, 0.8, 0.0, 2.0], requires_grad=True)  # |w| = sqrt(5)
    real, fake = torch.randn(32, 4, generator=g), torch.randn(32, 4, generator=g)
    penalty = gan.gradient_penalty(lambda x: x @ w, real, fake, g)
    assert penalty.item() == pytest.approx((math.sqrt(5) - 1) ** 2, rel=1e-5)
    (grad_w,) = torch.autograd.grad(penalty, w)
    assert torch.allclose(grad_w, 2 * (w.norm() - 1) * w.detach() / w.norm(), atol=1e-5)
    images = torch.rand(5, 1, 8, 8, generator=g)
    assert gan.gradient_penalty(lambda x: x.sum((1, 2, 3)), images, images.flip(0), g).item() == pytest.approx(49.0)


def test_ring_modes_covered_and_minibatch_discrimination():
    g = torch.Generator().manual_seed(2)
    points, k = gan.ring(4000, std=0.05, generator=g)
    centers = gan.ring_centers()
    assert torch.allclose(centers.norm(dim=1), torch.full((8,), 2.0))
    assert (torch.cdist(points, centers).argmin(1) == k).all()
    assert gan.modes_covered(points, centers, 0.05)[0] == 8
    one_mode = centers[3] + 0.05 * torch.randn(500, 2, generator=g)
    modes, quality = gan.modes_covered(one_mode, centers, 0.05)
    assert modes == 1 and quality > 0.98
    assert gan.modes_covered(torch.zeros(100, 2), centers, 0.05) == (0, 0.0)
    layer = gan.MinibatchDiscrimination(6, kernels=4, kernel_dim=3)
    x = torch.randn(10, 6, generator=g)
    out = layer(x)
    assert out.shape == (10, layer.out_features) == (10, 10)
    M = (x @ layer.T).view(10, 4, 3)
    expected = torch.exp(-(M[:, None] - M[None]).abs().sum(-1)).sum(1) - 1
    assert torch.allclose(out[:, 6:], expected, atol=1e-5)
    same = layer(x[:1].repeat(10, 1))[:, 6:]  # a collapsed batch: every row sees 9 twins
    assert torch.allclose(same, torch.full_like(same, 9.0))


def test_networks_shapes_conditioning_and_errors():
    for tricks in [gan.Tricks(), gan.Tricks(tanh=False, pool="avg", leaky=False, minibatch=True),
                   gan.Tricks(conditional=True, g_dropout=0.2, gaussian_z=False)]:
        model = gan.digit_gan(tricks, z_dim=8, width=8)
        y = torch.arange(6) % 10 if tricks.conditional else None
        x = model.sample(6, torch.Generator().manual_seed(0), y=y)
        assert x.shape == (6, 1, 8, 8) and 0 <= x.min() and x.max() <= 1
        assert model.D(model.to_model(x), y).shape == (6,)
    with pytest.raises(ValueError, match="pool"):
        gan.Discriminator(pool="median")
    with pytest.raises(ValueError, match="labels"):
        gan.train_gan(gan.digit_gan(gan.Tricks(conditional=True), width=8), torch.rand(20, 1, 8, 8), steps=1)
    with pytest.raises(ValueError, match="at least 1"):
        gan.train_gan(gan.point_gan(), torch.randn(20, 2), steps=0)
    clustered = gan.digit_gan(gan.Tricks(conditional=True), z_dim=8, width=8, classes=3)
    assert clustered.sample(4).shape == (4, 1, 8, 8)  # labels 0, 1, 2, 0 by default
    with pytest.raises(IndexError):
        clustered.sample(1, y=torch.tensor([3]))
    for labels in (torch.arange(20) % 4, torch.arange(20) - 1, torch.zeros(19, dtype=torch.long)):
        with pytest.raises(ValueError, match=r"one label in range\(3\) per data point"):
            gan.train_gan(clustered, torch.rand(20, 1, 8, 8), labels, steps=1)
    gan.train_gan(clustered, torch.rand(20, 1, 8, 8), torch.arange(20) % 3, steps=1)


def test_train_gan_runs_algorithm_1_with_k_steps_and_monitor():
    data, _ = gan.ring(512, generator=torch.Generator().manual_seed(3))
    model = gan.point_gan(gan.Tricks(d_steps=3), hidden=16)
    calls = []
    steps_seen = []
    original = model.D.forward

    def counting(x):
        calls.append(len(x))
        return original(x)

    model.D.forward = counting
    gan.train_gan(model, data, steps=4, batch_size=32, monitor=lambda m: steps_seen.append(1) or {"one": 1.0}, every=2)
    assert len(calls) == 4 * (3 * 2 + 1)  # k real+fake evaluations of D, then one for G's step
    assert model.history["step"] == [1, 2, 4] and model.history["one"] == [1.0, 1.0, 1.0]
    assert len(model.history["d_loss"]) == 4 and not model.G.training


def test_the_average_of_g_follows_the_ema_recurrence_batch_norm_included():
    """G_ema after 3 steps of ema = 0.5 equals the recurrence e_1 = theta_1, e_t = (e_(t-1) + theta_t) / 2
    on G's weights as they were after each step, its batch-norm running statistics included."""
    model = gan.digit_gan(z_dim=4, width=4)
    seen = []
    gan.train_gan(model, torch.rand(40, 1, 8, 8), steps=3, batch_size=8, ema=0.5, every=1,
                  monitor=lambda m: seen.append({k: v.clone() for k, v in m.G.state_dict().items()}) or {})
    expected = seen[0]
    for state in seen[1:]:
        expected = {k: (expected[k] + v) / 2 if v.is_floating_point() else v for k, v in state.items()}
    averaged = model.averaged()
    assert averaged.G is model.G_ema and averaged.D is model.D and not averaged.G.training
    for key, value in averaged.G.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, expected[key], atol=1e-6), key
    assert any("running_mean" in k for k in expected)
    with pytest.raises(ValueError, match="without an average"):
        gan.digit_gan(z_dim=4, width=4).averaged()
    with pytest.raises(ValueError, match="decay"):
        gan.train_gan(gan.point_gan(), torch.randn(20, 2), steps=1, ema=1.0)


def test_energy_distance_is_zero_for_equal_samples_and_grows_with_shift():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(500, 2, generator=g)
    assert metrics.energy_distance(x, x) == pytest.approx(0.0, abs=1e-12)
    y = torch.randn(500, 2, generator=g)
    shifted = [metrics.energy_distance(x, y + s) for s in (0.0, 0.5, 2.0)]
    assert shifted[0] < 0.02 < shifted[1] < shifted[2]
    # 1-D closed form: for points a and b, 2|a - b| - 0 - 0 = 2|a - b|
    assert metrics.energy_distance(torch.zeros(1, 1), torch.full((1, 1), 3.0)) == pytest.approx(6.0)
    with pytest.raises(ValueError):
        metrics.energy_distance(torch.zeros(3, 2), torch.zeros(3, 3))
