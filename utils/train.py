"""One training loop for the whole course, with a progress bar and a returned history."""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from tqdm import tqdm

from . import system

LossFn = Callable[[Any], torch.Tensor]


def fit(
    model: torch.nn.Module,
    loader: Iterable,
    loss_fn: LossFn,
    *,
    epochs: int = 1,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 1e-3,
    eval_fn: Callable[[], dict[str, float]] | None = None,
    grad_clip: float | None = None,
    cosine_decay: bool = False,
    desc: str = "train",
) -> dict[str, list[float]]:
    """Train `model` for `epochs` passes over `loader`, minimizing loss_fn(batch).

    loss_fn receives each batch as the loader yields it, moved to the device of the model's
    parameters (system.to_device), and returns a scalar tensor.
    eval_fn, if given, runs after every epoch (in eval mode, without gradients) and returns
    named numbers. Returns the history: per epoch the mean training loss, each eval_fn
    number, and the seconds elapsed since the start. With cosine_decay, the learning rate
    follows a half cosine from its initial value down to zero over all the steps (Loshchilov
    and Hutter, 2017), which settles the weights at the end of a short budget.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    total_steps = epochs * len(loader)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    ) if cosine_decay else None
    history: dict[str, list[float]] = {"epoch": [], "loss": [], "seconds": []}
    device = system.device_of(model)
    start = time.perf_counter()
    bar = tqdm(total=epochs * len(loader), desc=desc, disable=system.is_quiet(), file=sys.stderr, leave=False)
    for epoch in range(1, epochs + 1):
        model.train()
        total, n = 0.0, 0
        for batch in loader:
            loss = loss_fn(system.to_device(batch, device))
            if not torch.isfinite(loss):
                bar.close()
                raise FloatingPointError(f"loss became {loss.item()} in epoch {epoch}: lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            if schedule is not None:
                schedule.step()
            total, n = total + loss.item(), n + 1
            bar.update()
        history["epoch"].append(epoch)
        history["loss"].append(total / max(n, 1))
        if eval_fn is not None:
            model.eval()
            with torch.no_grad():
                for key, value in eval_fn().items():
                    history.setdefault(key, []).append(float(value))
        history["seconds"].append(time.perf_counter() - start)
        bar.set_postfix(loss=f"{history['loss'][-1]:.4f}")
    bar.close()
    model.eval()
    return history
