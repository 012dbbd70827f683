"""utils.flows and utils.ebm against autograd Jacobians, closed forms and quadrature."""
import math

import pytest
import torch

from utils import diffusion, ebm, flows


def _randomize(module, generator, scale=0.5):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=generator))
    return module


@pytest.mark.parametrize("make,dim,volume_preserving", [
    (lambda: flows.coupling_flow(2, 4, 16), 2, False),
    (lambda: flows.coupling_flow(5, 3, 16, additive=True), 5, True),
    (lambda: flows.autoregressive_flow("maf", 4, 2, 16), 4, False),
    (lambda: flows.autoregressive_flow("iaf", 4, 2, 16), 4, False),
], ids=["realnvp", "nice", "maf", "iaf"])
def test_each_flow_inverts_and_its_log_det_is_autograds(make, dim, volume_preserving):
    g = torch.Generator().manual_seed(0)
    flow = _randomize(make().double(), g)
    x = torch.randn(16, dim, generator=g, dtype=torch.float64)
    z, log_det = flow(x)
    assert torch.allclose(flow.inverse(z), x, atol=1e-10)
    reference = flows.log_abs_det_jacobian(lambda v: flow(v)[0], x)
    assert torch.allclose(log_det, reference, atol=1e-10)
    if volume_preserving:  # NICE: every coupling has det = 1, only its last layer scales
        scale = flow.layers[-1]
        assert isinstance(scale, flows.Scale)
        assert torch.allclose(reference, scale.s.sum().expand(16), atol=1e-10)
    else:
        assert reference.abs().max() > 0.1  # a random affine flow changes volume


def test_a_flow_density_integrates_to_one():
    g = torch.Generator().manual_seed(1)
    flow = _randomize(flows.coupling_flow(2, 4, 16).double(), g, scale=0.3)
    points, cell = ebm.grid(9.0, 400)
    with torch.no_grad():
        mass = flow.log_prob(points).exp().sum().item() * cell
    assert mass == pytest.approx(1.0, abs=0.01)


def test_made_output_i_depends_only_on_inputs_before_i():
    g = torch.Generator().manual_seed(2)
    made = _randomize(flows.MADE(5, 32).double(), g)
    jac = torch.autograd.functional.jacobian(lambda v: made(v[None])[0][0], torch.randn(5, dtype=torch.float64))
    assert torch.all(jac.triu() == 0)  # d mu_i / d x_j = 0 for j >= i
    assert jac.tril(-1).abs().sum() > 0.1  # and it does depend on the earlier ones


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        flows.AffineCoupling(torch.ones(3))
    with pytest.raises(ValueError):
        flows.autoregressive_flow("glow", 3)
    with pytest.raises(ValueError):
        flows.MADE(1)


def test_implicit_score_matching_is_the_fisher_divergence_up_to_a_constant():
    # p = N(0, 1) in 2-D; model energies E_a(x) = a |x|^2 / 2, score -a x:
    # Fisher = 1/2 E|(1 - a) x|^2 = (1 - a)^2, ISM = E[a^2 |x|^2 / 2] - 2a = a^2 - 2a.
    g = torch.Generator().manual_seed(3)
    x = torch.randn(200_000, 2, generator=g, dtype=torch.float64)
    for a in (0.5, 1.0, 2.0):
        energy = lambda v, a=a: 0.5 * a * v.pow(2).sum(-1)  # noqa: E731
        ism = ebm.implicit_score_matching_loss(energy, x).item()
        fisher = ebm.fisher_divergence(lambda v, a=a: -a * v, lambda v: -v, x)
        assert ism == pytest.approx(a * a - 2 * a, abs=0.02)
        assert fisher - ism == pytest.approx(1.0, abs=0.02)  # the constant 1/2 E|grad log p|^2


def test_score_is_minus_the_energy_gradient_and_log_z_and_its_gradient_are_right():
    energy = lambda v: 0.5 * v.pow(2).sum(-1) / 0.49  # noqa: E731  N(0, 0.7^2 I)
    x = torch.tensor([[0.3, -1.2]], dtype=torch.float64)
    assert torch.allclose(ebm.score(energy, x), -x / 0.49)
    assert ebm.log_partition(energy, 5.0, 300).item() == pytest.approx(math.log(2 * math.pi * 0.49), abs=1e-3)
    torch.manual_seed(4)
    model = ebm.EnergyMLP(2, 16)
    log_z = ebm.log_partition(model, 6.0, 200)
    auto = torch.autograd.grad(log_z, list(model.parameters()))
    points, _ = ebm.grid(6.0, 200)
    weights = torch.softmax(-model(points.float()), 0).detach()
    expected = torch.autograd.grad(-(weights * model(points.float())).sum(), list(model.parameters()))
    for a, b in zip(auto, expected):
        assert torch.allclose(a, b, atol=1e-5)


def test_denoising_score_matching_is_minimized_by_the_blurred_score():
    g = torch.Generator().manual_seed(5)
    mix = diffusion.GaussianMixture(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), 0.3)
    x = mix.sample(100_000, g)
    sigma = 0.5
    blurred = diffusion.GaussianMixture(mix.means, math.sqrt(0.3**2 + sigma**2))
    best = ebm.denoising_score_matching_loss(blurred.score, x, sigma, torch.Generator().manual_seed(6)).item()
    worse = ebm.denoising_score_matching_loss(mix.score, x, sigma, torch.Generator().manual_seed(6)).item()
    assert best < worse - 0.1


def test_langevin_on_an_energy_reaches_its_gaussian():
    g = torch.Generator().manual_seed(7)
    energy = lambda v: 0.5 * v.pow(2).sum(-1) / 0.25  # noqa: E731  N(0, 0.5^2 I)
    x = ebm.langevin_energy(energy, 3 * torch.ones(20_000, 2), 0.01, 400, g)
    # the discretized chain's variance is s^2 / (1 - step / (2 s^2)) (see utils.diffusion)
    assert x.var().item() == pytest.approx(0.25 / (1 - 0.01 / 0.5), rel=0.03)
    assert x.mean().abs().item() < 0.02
