"""First-order optimizers written out as their update rules, on one flat parameter vector.

Each optimizer is called as theta = opt.step(theta, grad_fn), where grad_fn(point) returns the
(mini-batch) gradient at any point: Nesterov's method needs it at a look-ahead point. The rules
follow the lecture's notation (eta the learning rate, beta the momentum) and PyTorch's placement
of epsilon, so that they can be checked against torch.optim step for step.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

GradFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class SGD:
    """theta_{t+1} = theta_t - eta g(theta_t) + beta (theta_t - theta_{t-1})   (heavy ball if beta > 0);
    Nesterov: the same with the gradient taken at the look-ahead theta_t + beta (theta_t - theta_{t-1})."""

    lr: float
    momentum: float = 0.0
    nesterov: bool = False
    previous: torch.Tensor | None = field(default=None, repr=False)

    def step(self, theta: torch.Tensor, grad_fn: GradFn) -> torch.Tensor:
        velocity = torch.zeros_like(theta) if self.previous is None else theta - self.previous
        ahead = theta + self.momentum * velocity
        g = grad_fn(ahead if self.nesterov else theta)
        self.previous = theta
        return theta - self.lr * g + self.momentum * velocity


@dataclass
class AdaGrad:
    """G_t = G_{t-1} + g_t^2;  theta_{t+1} = theta_t - eta g_t / (sqrt(G_t) + eps)   (Duchi et al. 2011)."""

    lr: float
    eps: float = 1e-10
    G: torch.Tensor | None = field(default=None, repr=False)

    def step(self, theta: torch.Tensor, grad_fn: GradFn) -> torch.Tensor:
        g = grad_fn(theta)
        self.G = g.pow(2) if self.G is None else self.G + g.pow(2)
        return theta - self.lr * g / (self.G.sqrt() + self.eps)


@dataclass
class RMSProp:
    """G_t = gamma G_{t-1} + (1 - gamma) g_t^2, a moving average instead of AdaGrad's sum (Hinton 2012)."""

    lr: float
    gamma: float = 0.99
    eps: float = 1e-8
    G: torch.Tensor | None = field(default=None, repr=False)

    def step(self, theta: torch.Tensor, grad_fn: GradFn) -> torch.Tensor:
        g = grad_fn(theta)
        G = torch.zeros_like(theta) if self.G is None else self.G
        self.G = self.gamma * G + (1 - self.gamma) * g.pow(2)
        return theta - self.lr * g / (self.G.sqrt() + self.eps)


@dataclass
class Adam:
    """Kingma and Ba (2015), Algorithm 1:
    m_t = beta1 m_{t-1} + (1 - beta1) g_t,   v_t = beta2 v_{t-1} + (1 - beta2) g_t^2,
    m_hat = m_t / (1 - beta1^t),   v_hat = v_t / (1 - beta2^t),
    theta_{t+1} = theta_t - eta m_hat / (sqrt(v_hat) + eps)."""

    lr: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    t: int = 0
    m: torch.Tensor | None = field(default=None, repr=False)
    v: torch.Tensor | None = field(default=None, repr=False)

    def step(self, theta: torch.Tensor, grad_fn: GradFn) -> torch.Tensor:
        g = grad_fn(theta)
        if self.m is None:
            self.m, self.v = torch.zeros_like(theta), torch.zeros_like(theta)
        self.t += 1
        self.m = self.beta1 * self.m + (1 - self.beta1) * g
        self.v = self.beta2 * self.v + (1 - self.beta2) * g.pow(2)
        m_hat = self.m / (1 - self.beta1**self.t)
        v_hat = self.v / (1 - self.beta2**self.t)
        return theta - self.lr * m_hat / (v_hat.sqrt() + self.eps)


Optimizer = SGD | AdaGrad | RMSProp | Adam


def torch_counterpart(opt: Optimizer, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    """The torch.optim optimizer with the same hyperparameters."""
    if isinstance(opt, SGD):
        return torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum, nesterov=opt.nesterov)
    if isinstance(opt, AdaGrad):
        return torch.optim.Adagrad(params, lr=opt.lr, eps=opt.eps)
    if isinstance(opt, RMSProp):
        return torch.optim.RMSprop(params, lr=opt.lr, alpha=opt.gamma, eps=opt.eps)
    return torch.optim.Adam(params, lr=opt.lr, betas=(opt.beta1, opt.beta2), eps=opt.eps)


# --- Flat parameters of a module ---------------------------------------------------------------


def flat_loss(model: nn.Module, loss: Callable[[nn.Module], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """theta (P,) -> loss(model with its parameters set to theta), differentiable in theta."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]

    def at(theta: torch.Tensor) -> torch.Tensor:
        chunks = theta.split([math.prod(s) for s in shapes])
        params = {n: c.view(s) for n, c, s in zip(names, chunks, shapes)}
        return loss(lambda *args: torch.func.functional_call(model, params, args))
    return at


def gradient_of(f: Callable[[torch.Tensor], torch.Tensor]) -> GradFn:
    """The gradient function of a scalar function of a flat vector."""
    def grad(theta: torch.Tensor) -> torch.Tensor:
        point = theta.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(f(point), point)
        return g
    return grad


def minimize(opt: Optimizer, f: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor,
             steps: int, grad: GradFn | None = None) -> Iterator[torch.Tensor]:
    """Yield theta_0, theta_1, ..., theta_steps of opt on the deterministic function f, with its
    gradient from autograd unless a (faster) closed-form grad is given."""
    grad = grad or gradient_of(f)
    yield theta
    for _ in range(steps):
        theta = opt.step(theta, grad)
        yield theta
