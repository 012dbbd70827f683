"""An accelerator emulated on the CPU, to check that code runs where system.get_device() says.

A reader with a GPU runs the chapters on it; this machine has none. Here a tensor "moved to the
accelerator" is an `Elsewhere`: it computes on the CPU with the CPU's numbers, reports the meta
device, and refuses what CUDA refuses:

- an operation that mixes it with a CPU tensor (a 0-dim CPU tensor passes, as on CUDA, and so
  do CPU indices into it and a packed sequence's lengths);
- `.numpy()` (and so `np.asarray`, matplotlib) before `.cpu()`;
- a draw with a CPU torch.Generator onto it;
- float64, which Apple's MPS does not have (CUDA does: code that passes here runs on both).

Inside `Accelerator()`, `tensor.to(DEVICE)`, `module.to(DEVICE)` and the factories given
`device=DEVICE` make such tensors; `.cpu()` and `.to("cpu")` bring a plain one back. Every
operation costs a Python call, so only short runs are practical.
"""
from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors
from torch.utils._python_dispatch import TorchDispatchMode, return_and_correct_aliasing
from torch.utils._pytree import tree_map

aten = torch.ops.aten
DEVICE = torch.device("meta")
# the arguments CUDA takes from the CPU: indices, and a packed sequence's lengths and batch sizes
ON_THE_CPU = {aten.index.Tensor: 1, aten.index_put.default: 1, aten.index_put_.default: 1,
              aten._index_put_impl_.default: 1, aten._pack_padded_sequence.default: 1,
              aten._pad_packed_sequence.default: 1, aten.lstm.data: 1, aten.gru.data: 1}
# and the results CUDA also leaves on the CPU: the batch sizes and lengths those two return
CPU_RESULTS = {aten._pack_padded_sequence.default: 1, aten._pad_packed_sequence.default: 1}


def _is_device(value) -> bool:
    return isinstance(value, (str, torch.device)) and torch.device(value) == DEVICE


def _unwrap(x):
    return x.elem if isinstance(x, Elsewhere) else x


def _wrap(x):
    return Elsewhere(x) if type(x) is torch.Tensor else x


class Elsewhere(torch.Tensor):
    """A CPU tensor that behaves as one on another device."""

    @staticmethod
    def __new__(cls, elem: torch.Tensor):
        if elem.dtype is torch.float64:
            raise TypeError("Cannot convert a tensor to float64 on the accelerator: Apple's MPS has no float64")
        return torch.Tensor._make_wrapper_subclass(
            cls, elem.size(), strides=elem.stride(), storage_offset=elem.storage_offset(), dtype=elem.dtype,
            layout=elem.layout, device=DEVICE, requires_grad=elem.requires_grad)

    def __init__(self, elem: torch.Tensor):
        self.elem = elem

    def __repr__(self) -> str:
        return f"{self.elem!r} (on the emulated accelerator)"

    def __format__(self, spec: str) -> str:
        return self.elem.__format__(spec)  # a 0-dim tensor formats as its number, as on CUDA

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is aten._to_copy.default and torch.device(kwargs.get("device") or DEVICE).type == "cpu":
            return func(args[0].elem, **kwargs)  # .cpu(), .to("cpu"): a plain CPU tensor
        for position, arg in enumerate(args):
            if ON_THE_CPU.get(func) != position:
                tree_map(lambda x, position=position: _refuse_cpu(x, func, position), arg)
        out = func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))
        if func in CPU_RESULTS:
            return tuple(x if i == CPU_RESULTS[func] else _wrap(x) for i, x in enumerate(out))
        wrapped = tree_map(_wrap, out)
        return return_and_correct_aliasing(func, args, kwargs, wrapped)


def _refuse_cpu(x, func, position: int, lengths_ok: bool = False) -> None:
    """Raise as CUDA does for a CPU tensor x (lengths_ok: unless it holds int64 batch sizes)."""
    if isinstance(x, torch.Tensor) and not isinstance(x, Elsewhere) and x.dim() > 0 \
            and not (lengths_ok and x.dtype is torch.int64):
        raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                           f"the accelerator and cpu! ({func}, argument {position})")


class _OnTheDevice(TorchDispatchMode):
    """Every operation asked to make a tensor on DEVICE (a factory, a copy, `.to(DEVICE)`, or one
    that PyTorch's own decompositions make "like" an Elsewhere) makes it on the CPU, wrapped."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not _is_device(kwargs.get("device")):
            return func(*args, **kwargs)
        return tree_map(_wrap, func(*args, **{**kwargs, "device": torch.device("cpu")}))


class Accelerator(TorchFunctionMode):
    """While active, DEVICE is an accelerator made of Elsewhere tensors."""

    factories = _device_constructors()
    recurrent = (torch._VF.lstm, torch._VF.gru)

    @staticmethod
    def _recurrent(func, args, kwargs):
        """An LSTM or GRU without gradients in one CPU call: PyTorch would otherwise run it a time
        step at a time through Python, far too slow for the chapters' long texts."""
        for position, arg in enumerate(args):
            tree_map(lambda x, position=position: _refuse_cpu(x, func, position, lengths_ok=True), arg)
        with torch._C.DisableTorchFunction():
            return tree_map(_wrap, func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs)))

    def __enter__(self):
        self.dispatch = _OnTheDevice()
        self.dispatch.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        self.dispatch.__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.factories and _is_device(kwargs.get("device")):
            generator = kwargs.get("generator")
            if generator is not None and generator.device.type == "cpu":
                raise RuntimeError(f"Expected an accelerator generator for {func.__name__}, but found 'cpu'")
            with torch._C.DisableTorchFunction():  # torch.tensor(..., device=) has no aten op of its own
                return Elsewhere(func(*args, **{**kwargs, "device": "cpu"}))
        if func in self.recurrent and not torch.is_grad_enabled():
            return self._recurrent(func, args, kwargs)
        if func is torch.Tensor.numpy and isinstance(args[0], Elsewhere):
            raise TypeError("can't convert an accelerator tensor to numpy: use Tensor.cpu() first")
        if func is torch.Tensor.tolist and isinstance(args[0], Elsewhere):
            return args[0].elem.tolist()
        return func(*args, **kwargs)
