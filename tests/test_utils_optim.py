"""utils.optim against torch.optim, step for step, on a quadratic and a small network."""
import pytest
import torch
from torch import nn

from utils import optim

RULES = [optim.SGD(0.05), optim.SGD(0.05, momentum=0.9), optim.SGD(0.05, momentum=0.9, nesterov=True),
         optim.AdaGrad(0.3), optim.RMSProp(0.01), optim.Adam(0.05)]


def _torch_trajectory(rule, f, theta, steps):
    p = theta.clone().requires_grad_(True)
    opt = optim.torch_counterpart(rule, [p])
    out = [p.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        f(p).backward()
        opt.step()
        out.append(p.detach().clone())
    return out


@pytest.mark.parametrize("rule", RULES, ids=lambda r: type(r).__name__ + ("-nesterov" if getattr(r, "nesterov", 0)
                                                                           else "-momentum" if getattr(r, "momentum", 0)
                                                                           else ""))
def test_each_rule_follows_torch_optim_step_for_step(rule):
    A = torch.tensor([[3.0, 0.5], [0.5, 0.2]], dtype=torch.float64)
    f = lambda th: 0.5 * th @ A @ th + torch.sin(th).sum()  # noqa: E731
    theta = torch.tensor([1.5, -2.0], dtype=torch.float64)
    ours = list(optim.minimize(rule, f, theta, 50))
    theirs = _torch_trajectory(rule, f, theta, 50)
    if isinstance(rule, optim.SGD) and rule.nesterov:
        # torch.optim stores the look-ahead point phi_t = theta_t + beta (theta_t - theta_{t-1})
        ours = [ours[0]] + [b + rule.momentum * (b - a) for a, b in zip(ours, ours[1:])]
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, atol=1e-10)
    assert not torch.allclose(ours[-1], theta)


def test_the_rules_match_torch_on_a_network_with_minibatches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    x, y = torch.randn(64, 4, dtype=torch.float64), torch.randn(64, 1, dtype=torch.float64)
    theta0 = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
    for rule in (optim.Adam(0.01), optim.SGD(0.1, momentum=0.9, nesterov=True)):
        theta, twin = theta0.clone(), [p.detach().clone().requires_grad_(True) for p in model.parameters()]
        ref = optim.torch_counterpart(rule, twin)
        for step in range(10):
            batch = slice(16 * (step % 4), 16 * (step % 4 + 1))
            f = optim.flat_loss(model, lambda fwd: (fwd(x[batch]) - y[batch]).pow(2).mean())
            previous, theta = theta, rule.step(theta, optim.gradient_of(f))
            ref.zero_grad()
            out = torch.func.functional_call(model, dict(zip([n for n, _ in model.named_parameters()], twin)),
                                             (x[batch],))
            (out - y[batch]).pow(2).mean().backward()
            ref.step()
        seen = theta + rule.momentum * (theta - previous) if isinstance(rule, optim.SGD) else theta
        assert torch.allclose(seen, torch.nn.utils.parameters_to_vector(twin).detach(), atol=1e-10)
        assert not torch.allclose(theta, theta0)


def test_adams_first_step_has_size_lr_and_the_swapped_corrections_do_not():
    g = torch.tensor([0.003, -40.0], dtype=torch.float64)
    rule = optim.Adam(0.1)
    step = rule.step(torch.zeros(2, dtype=torch.float64), lambda th: g)
    assert torch.allclose(step, -0.1 * g.sign(), rtol=1e-4)  # m_hat = g, v_hat = g^2
    m, v = 0.1 * g, 0.001 * g * g
    swapped = -0.1 * (m / (1 - 0.999)) / ((v / (1 - 0.9)).sqrt() + 1e-8)
    assert swapped.abs().min() > 900 * 0.1  # a first step 1000 times too long
