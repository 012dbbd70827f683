"""Seeding, device choice, the quiet switch for progress bars, and values for a page's prose.

NumPy and PyTorch are imported by the functions that use them: the grader's coordinator reads
the quiet switch alone, and importing torch would cost it over a second at every start
and a larger heap in each process it forks.
"""
from __future__ import annotations

import itertools
import os
import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

QUIET_ENV_VARS = ("CI", "NBGRADER_EXECUTION", "DLCOURSE_QUIET")


def set_seed(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and PyTorch; return a torch.Generator seeded the same way.

    Call it once at the top of a notebook. On the CPU, PyTorch is then deterministic.
    """
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def device_of(model) -> torch.device:
    """Where a model computes: the device of its first parameter or buffer; the CPU for a plain
    function or a module without any. Samplers draw their noise with a CPU generator (the same
    numbers on every machine for a seed) and move it there."""
    import torch

    if isinstance(model, torch.nn.Module):
        for tensor in itertools.chain(model.parameters(), model.buffers()):
            return tensor.device
    return torch.device("cpu")


def to_device(batch, device: torch.device):
    """A batch on `device`: a tensor moved, a tuple or list of them moved one by one, anything
    else as it is. On the device it is already on, a tensor is returned as it is (no copy)."""
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(item, device) for item in batch)
    return batch


def get_device() -> torch.device:
    """The first CUDA GPU if there is one, else Apple's MPS, else the CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def is_quiet() -> bool:
    """True in CI, under the autograder and during the book build: no progress bars there.

    Progress bars write to stderr; nbgrader scores a test cell 0 when anything reaches
    stderr, and a static page should not show a frozen bar.
    """
    return any(os.environ.get(name, "").strip() not in ("", "0", "false") for name in QUIET_ENV_VARS)


def glue(name: str, value: float | int | str) -> None:
    """Keep `value` under `name` for the page's text, which pastes it with {glue:text}`name:.2f`
    (MyST-NB's glue), so that a number in the prose is the number this run printed. Without
    MyST-NB (on Colab, say) there is no page to paste into, and nothing happens."""
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return
    myst_glue(name, value, display=False)
