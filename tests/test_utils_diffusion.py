"""utils.diffusion against closed forms, autograd and Monte-Carlo estimates."""
import math

import pytest
import torch

from utils import diffusion


def test_linear_schedule_matches_ho_et_al_at_t_1000_and_scales_with_T():
    s = diffusion.linear_schedule(1000)
    assert s.T == 1000 and s.betas[0] == 0 and s.alpha_bar[0] == 1
    assert s.betas[1].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)
    assert s.alpha_bar[-1].item() == pytest.approx(4.04e-5, rel=0.01)  # Ho et al.: about 4e-5
    short = diffusion.linear_schedule(200)
    assert short.betas[1].item() == pytest.approx(5e-4) and short.betas[-1].item() == pytest.approx(0.1)


def test_cosine_schedule_follows_its_formula_and_alpha_bar_is_the_product():
    s = diffusion.cosine_schedule(100)
    f = lambda t: math.cos((t / 100 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for t in (1, 25, 50, 75, 99):
        assert s.alpha_bar[t].item() == pytest.approx(f(t) / f(0), rel=1e-10)
    assert torch.allclose(s.alpha_bar, torch.cumprod(1 - s.betas, 0))
    assert s.betas.max().item() <= 0.999
    with pytest.raises(ValueError):
        diffusion.Schedule(torch.tensor([0.1, 0.2], dtype=torch.float64))  # beta_0 must be 0


def test_q_sample_has_the_marginal_of_the_step_by_step_chain():
    g = torch.Generator().manual_seed(0)
    s = diffusion.linear_schedule(50)
    x_0 = torch.full((200_000, 1), 1.5)
    x = x_0
    for t in range(1, 51):
        x = diffusion.q_step(x, t, s, torch.randn(x.shape, generator=g))
    direct = diffusion.q_sample(x_0, torch.full((200_000,), 50), s, torch.randn(x_0.shape, generator=g))
    mean, std = 1.5 * s.alpha_bar[50].sqrt().item(), (1 - s.alpha_bar[50]).sqrt().item()
    for sample in (x, direct):
        assert sample.mean().item() == pytest.approx(mean, abs=0.01)
        assert sample.std().item() == pytest.approx(std, rel=0.01)


def test_predict_x0_inverts_q_sample_and_the_exact_eps_gives_the_posterior_mean():
    g = torch.Generator().manual_seed(1)
    s = diffusion.cosine_schedule(100)
    x_0, eps = torch.randn(8, 3, generator=g, dtype=torch.float64), torch.randn(8, 3, generator=g, dtype=torch.float64)
    t = 37
    x_t = diffusion.q_sample(x_0, t, s, eps)
    assert torch.allclose(diffusion.predict_x0(x_t, t, eps, s), x_0)
    # with the true noise, Algorithm 2's mean is the mean of q(x_{t-1} | x_t, x_0) (Ho et al. eq. 7)
    ab, ab_prev, beta = s.alpha_bar[t], s.alpha_bar[t - 1], s.betas[t]
    posterior = (ab_prev.sqrt() * beta / (1 - ab)) * x_0 + ((1 - beta).sqrt() * (1 - ab_prev) / (1 - ab)) * x_t
    assert torch.allclose(diffusion.p_sample(eps, x_t, t, s, torch.zeros_like(x_t)), posterior)


def test_mixture_score_and_exact_eps_against_autograd():
    g = torch.Generator().manual_seed(2)
    mix = diffusion.GaussianMixture(torch.tensor([[0.0, 1.0], [2.0, -1.0], [-1.0, 0.5]], dtype=torch.float64),
                                    0.4, torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64))
    s = diffusion.cosine_schedule(50)
    t = torch.tensor([5, 20, 45])
    x = torch.randn(3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    for i in range(3):
        q_t = mix.noised(s.alpha_bar[t[i]].item())
        (grad,) = torch.autograd.grad(q_t.log_prob(x[i : i + 1]).sum(), x)
        assert torch.allclose(q_t.score(x[i : i + 1].detach()), grad[i : i + 1], atol=1e-10)
        eps = mix.eps_model(s)(x.detach(), t)[i]
        assert torch.allclose(diffusion.score_from_eps(eps, int(t[i]), s), grad[i], atol=1e-10)
    samples = mix.sample(100_000, g)
    assert (samples[:, 0] > 1).double().mean().item() == pytest.approx(0.3, abs=0.01)


def test_ddpm_with_the_exact_eps_recovers_a_gaussian():
    g = torch.Generator().manual_seed(3)
    target = diffusion.GaussianMixture(torch.tensor([[1.0, -2.0]]), 0.5)
    s = diffusion.cosine_schedule(100)
    x, kept = diffusion.sample(target.eps_model(s), (20_000, 2), s, generator=g, keep=(100, 50, 0))
    assert set(kept) == {100, 50, 0}
    assert torch.allclose(x.mean(0), torch.tensor([1.0, -2.0]), atol=0.02)
    assert torch.allclose(x.std(0), torch.tensor([0.5, 0.5]), atol=0.02)
    # DDIM is a discretized ODE: with few steps it is off, and the error shrinks with the steps
    errors = []
    for steps in (5, 20, 100):
        ddim, _ = diffusion.sample(target.eps_model(s), (20_000, 2), s, steps=steps, generator=g)
        errors.append((ddim.std(0) - 0.5).abs().max().item())
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.02


def test_ddim_timesteps_and_errors():
    assert diffusion.ddim_timesteps(200, 4) == [200, 150, 100, 50]
    assert diffusion.ddim_timesteps(10, 10) == list(range(10, 0, -1))
    with pytest.raises(ValueError, match="steps"):
        diffusion.ddim_timesteps(10, 0)


def test_langevin_stationary_variance_matches_the_discretized_closed_form():
    g = torch.Generator().manual_seed(4)
    s2, delta = 2.0, 0.5
    x = diffusion.langevin(lambda x: -x / s2, torch.zeros(200_000, dtype=torch.float64), delta, 200, g)
    assert x.var().item() == pytest.approx(s2 / (1 - delta / (2 * s2)), rel=0.01)


@pytest.mark.parametrize("make", [lambda: diffusion.PlainMLP(100), lambda: diffusion.ResidualMLP(hidden=32),
                                  lambda: diffusion.UNet(channels=16)])
def test_networks_keep_the_shape_and_use_the_time(make):
    net = make()
    x = torch.randn(4, 1, 8, 8) if isinstance(net, diffusion.UNet) else torch.randn(4, 2)
    out_a, out_b = net(x, torch.full((4,), 3)), net(x, torch.full((4,), 90))
    assert out_a.shape == x.shape
    assert not torch.allclose(out_a, out_b)
    loss = diffusion.diffusion_loss(net, x, diffusion.linear_schedule(100), torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())


class MixtureByLabel(torch.nn.Module):
    """The exact eps of a Gaussian mixture given the label of its component, and without one."""

    def __init__(self, mix: diffusion.GaussianMixture, schedule: diffusion.Schedule) -> None:
        super().__init__()
        self.mix, self.schedule, self.null = mix, schedule, len(mix.means)

    def forward(self, x_t, t, y):
        eps = self.mix.eps_model(self.schedule)(x_t, t)  # the whole mixture: y = null
        for i in range(len(x_t)):
            if y[i] != self.null:
                one = diffusion.GaussianMixture(self.mix.means[y[i] : y[i] + 1], self.mix.std)
                eps[i] = one.eps_model(self.schedule)(x_t[i : i + 1], t[i : i + 1])[0]
        return eps


def test_guidance_is_the_eps_of_the_label_likelihood_raised_to_the_power_w():
    """(1 + w) eps(x, y) - w eps(x) = -sqrt(1 - alpha_bar) grad log [p_t(x | y) p_t(y | x)^w], by
    autograd on a mixture whose p_t(x | y), p_t(x) and p_t(y | x) are known exactly."""
    mix = diffusion.GaussianMixture(torch.tensor([[0.0, 1.0], [2.0, -1.0], [-1.0, 0.5]], dtype=torch.float64),
                                    0.4, torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64))
    s = diffusion.cosine_schedule(50)
    model = MixtureByLabel(mix, s)
    t, y = torch.tensor([5, 20, 45, 30]), torch.tensor([0, 1, 2, 1])
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64, requires_grad=True)
    for w in (0.0, 0.5, 3.0):
        guided = diffusion.Guided(model, y, w)(x.detach(), t)
        for i in range(4):
            ab = s.alpha_bar[t[i]].item()
            q_t = mix.noised(ab)
            q_y = diffusion.GaussianMixture(q_t.means[y[i] : y[i] + 1], q_t.std)
            log_label = math.log(mix.weights[y[i]]) + q_y.log_prob(x[i : i + 1]) - q_t.log_prob(x[i : i + 1])
            (grad,) = torch.autograd.grad((q_y.log_prob(x[i : i + 1]) + w * log_label).sum(), x)
            assert torch.allclose(guided[i], -math.sqrt(1 - ab) * grad[i], atol=1e-10), (w, i)


def test_drop_labels_replaces_a_share_p_with_null_and_keeps_the_rest():
    y = torch.arange(100_000) % 10
    dropped = diffusion.drop_labels(y, 0.1, 10, torch.Generator().manual_seed(0))
    kept = dropped != 10
    assert (~kept).double().mean().item() == pytest.approx(0.1, abs=0.005)
    assert torch.equal(dropped[kept], y[kept])
    assert torch.equal(diffusion.drop_labels(y, 0.0, 10), y)


def test_a_unet_with_labels_uses_them_and_null_is_no_label():
    torch.manual_seed(0)
    net, x, t = diffusion.UNet(channels=8, classes=10), torch.randn(4, 1, 8, 8), torch.full((4,), 30)
    assert torch.equal(net(x, t), net(x, t, torch.full((4,), 10)))
    assert not torch.allclose(net(x, t, torch.tensor([0, 1, 2, 3])), net(x, t, torch.tensor([4, 5, 6, 7])))
    with pytest.raises(ValueError, match="no labels"):
        diffusion.UNet(channels=8)(x, t, torch.zeros(4, dtype=torch.long))
    torch.manual_seed(0)
    plain = diffusion.UNet(channels=8)  # no label table: the same parameters, drawn in the same order
    assert "label.weight" not in plain.state_dict()
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in plain.state_dict().items())
