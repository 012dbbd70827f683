"""Visible checks for assignments: each failure says what is wrong and what was expected.

The checks are strict on purpose: a value must be a plain torch.Tensor (not a subclass, not
an object that claims to equal everything), with the expected dtype and shape.
"""
from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from utils import wire


class CheckFailed(AssertionError):
    """A visible check did not pass; the message tells the student why."""


def check_tensor(x: object, name: str, shape: Sequence[int] | None = None,
                 dtype: torch.dtype | None = None) -> torch.Tensor:
    """x must be a finite torch.Tensor of the given shape and dtype; returns it."""
    if type(x) is not torch.Tensor:
        raise CheckFailed(f"{name} should be a torch.Tensor, but it is a {type(x).__name__}")
    if shape is not None and tuple(x.shape) != tuple(shape):
        raise CheckFailed(f"{name} has shape {tuple(x.shape)}, expected {tuple(shape)}")
    if dtype is not None and x.dtype != dtype:
        raise CheckFailed(f"{name} has dtype {x.dtype}, expected {dtype}")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise CheckFailed(f"{name} contains NaN or infinite values")
    return x


def check_close(actual: object, expected: torch.Tensor, name: str, atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """actual must match expected in type, shape, dtype and values within atol + rtol*|expected|."""
    actual = check_tensor(actual, name, shape=expected.shape, dtype=expected.dtype)
    diff = (actual.detach().double() - expected.detach().double()).abs()
    tol = atol + rtol * expected.detach().double().abs()
    bad = diff > tol
    if bool(bad.any()):
        where = tuple(int(i) for i in bad.nonzero()[0])
        raise CheckFailed(
            f"{name} differs from the expected values at {bad.sum().item()} of {bad.numel()} entries; "
            f"first at index {where}: got {actual[where].item():.6g}, expected {expected[where].item():.6g} "
            f"(largest difference {diff.max().item():.3g})"
        )


def check_scalar(actual: object, expected: float, name: str, atol: float = 1e-6, rtol: float = 1e-4) -> None:
    """actual must be a Python float or int (or a 0-d tensor) close to expected."""
    if type(actual) is torch.Tensor and actual.dim() == 0:
        actual = actual.item()
    if type(actual) not in (float, int):
        raise CheckFailed(f"{name} should be a number (float), but it is a {type(actual).__name__}")
    if not abs(actual - expected) <= atol + rtol * abs(expected):
        raise CheckFailed(f"{name} = {actual:.6g}, expected {expected:.6g}")


def check_gradient(fn: Callable[..., torch.Tensor], inputs: Sequence[torch.Tensor], name: str,
                   eps: float = 1e-6, atol: float = 1e-5) -> None:
    """Autograd gradients of fn must match central finite differences (inputs made float64)."""
    args = [x.detach().double().requires_grad_(x.is_floating_point()) for x in inputs]
    try:
        ok = torch.autograd.gradcheck(fn, args, eps=eps, atol=atol, raise_exception=True)
    except Exception as err:  # gradcheck raises GradcheckError with a long numerical report
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckFailed(f"the gradient of {name} is wrong or not differentiable: {first}") from None
    if not ok:
        raise CheckFailed(f"the gradient of {name} does not match finite differences")


def passed(name: str) -> None:
    """Print a one-line confirmation, so the student sees which checks ran."""
    print(f"ok: {name}")


# --- records for the trusted grader ------------------------------------------------------------
# Hidden tests do not judge inside the student's kernel: they *record* what the student's code
# returns on hidden inputs, as plain JSON (tensors as dtype, shape and raw bytes, never pickle).
# The grader compares the records with those of the reference solution in a separate, trusted
# process. Outside the grader ($DLCOURSE_RECORDS unset) recording does nothing. The format is
# utils.wire's.

TENSOR_DTYPES = {getattr(torch, name): name for name in wire.DTYPES}


def encode(value: object) -> dict:
    """A JSON-safe description of value: a tensor (exact dtype and shape) or JSON data."""
    if type(value) is torch.Tensor:
        if value.dtype not in TENSOR_DTYPES or value.is_sparse or value.is_complex():
            return {"kind": "unsupported", "value": f"tensor of dtype {value.dtype}"}
        t = value.detach().cpu().contiguous()
        raw = t.numpy().tobytes()
        return {"kind": "tensor", "dtype": TENSOR_DTYPES[t.dtype], "shape": list(t.shape),
                "data": base64.b64encode(raw).decode()}
    if _plain(value):
        return {"kind": "json", "value": value}
    return {"kind": "unsupported", "value": type(value).__name__}


def _plain(v: object, depth: int = 0) -> bool:
    if depth > 20:
        return False
    if v is None or type(v) in (bool, int, float, str):
        return True
    if type(v) is list:
        return all(_plain(x, depth + 1) for x in v)
    if type(v) is dict:
        return all(type(k) is str and _plain(x, depth + 1) for k, x in v.items())
    return False


def record(name: str, compute: Callable[[], object], atol: float = 1e-6, rtol: float = 1e-5) -> None:
    """Record compute() under name ("grade_id/label") for the grader; an exception is recorded too.

    atol and rtol are the tolerances the grader allows for floating-point results (only those
    of the reference solution's run count).
    """
    folder = os.environ.get(wire.RECORDS_ENV)
    if not folder:
        return
    if not wire.NAME.match(name):
        raise ValueError(f"record name {name!r} must look like 'grade_id/label'")
    try:
        entry = encode(compute())
    except Exception as err:  # the student's code failed on this input: that is the record
        entry = {"kind": "error", "value": f"{type(err).__name__}: {str(err)[:wire.MAX_ERROR_CHARS]}"}
    entry.update(name=name, atol=float(atol), rtol=float(rtol))
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    (path / wire.filename(name)).write_text(json.dumps(entry))
