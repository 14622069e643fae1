"""A CPU-only stand-in for a CUDA device, to catch host/device bugs without a GPU.

Inside ``with FakeCuda():`` a ``torch.device("cuda")`` is accepted everywhere a device is (
``Tensor.to``, ``Module.to``, factory functions' ``device=``); the tensors made that way hold their
values on the CPU but are *tagged*: they report ``.device == cuda:0`` and ``.is_cuda``, every op
with a tagged input returns tagged tensors, ``.cpu()`` / ``.to("cpu")`` return untagged copies, and
``syncs`` counts the host's reads of device values; the operations a real GPU refuses raise the
error torch raises there:

* ``.numpy()`` and ``np.asarray(t)`` (``__array__``) of a tagged tensor;
* an op mixing tagged tensors with untagged (host) tensors of one or more dimensions
  (``cat``, ``scatter_``, ``masked_fill``, arithmetic...); 0-dim host tensors are allowed, as
  on CUDA, and so is ``copy_`` across devices and indexing a tagged tensor with host indices;
* indexing a host tensor with tagged indices.

Gradients created by autograd are tagged when read through ``.grad``, and no mixing check runs
inside a backward pass (its incoming gradients are created in C++, untagged). Everything runs
through Python, so keep the models tiny.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.overrides import TorchFunctionMode

_TAG = "_recgym_fake_cuda"
CUDA = torch.device("cuda", 0)

_NUMPY = {torch.Tensor.numpy, torch.Tensor.__array__}
_TO_HOST = {torch.Tensor.cpu}
_READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__, torch.Tensor.__int__, torch.Tensor.__float__,
          torch.Tensor.__index__}
_INDEX = {torch.Tensor.__getitem__, torch.Tensor.__setitem__, torch.Tensor.index_put_, torch.Tensor.index_put}
_NO_CHECK = {torch.Tensor.copy_, torch._has_compatible_shallow_copy_type, torch.Tensor.__repr__, torch.Tensor.__format__, torch.Tensor.__str__}


def on_fake_cuda(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and getattr(t, _TAG, False)


def _property(func) -> tuple[str, str] | None:
    """``("device", "__get__")`` for the method-wrapper torch passes on ``t.device`` etc., else ``None``."""
    owner = getattr(func, "__self__", None)
    if type(owner).__name__ == "getset_descriptor":
        return owner.__name__, func.__name__
    return None


def _tag(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        setattr(out, _TAG, True)
    elif isinstance(out, (tuple, list)):
        for o in out:
            _tag(o)
    return out


def _tensors(x: Any):
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, (tuple, list)):
        for v in x:
            yield from _tensors(v)
    elif isinstance(x, dict):
        for v in x.values():
            yield from _tensors(v)


def _is_cuda(d: Any) -> bool:
    if isinstance(d, torch.Tensor):
        return on_fake_cuda(d)
    if isinstance(d, (str, torch.device)):
        return torch.device(d).type == "cuda"
    return False


def _is_device(d: Any) -> bool:
    if isinstance(d, torch.device):
        return True
    if isinstance(d, str):
        try:
            torch.device(d)
        except RuntimeError:
            return False
        return True
    return False


class DeviceMismatch(RuntimeError):
    pass


class FakeCuda(TorchFunctionMode):
    """Run ``device="cuda"`` code on the CPU while enforcing CUDA's host/device rules (module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.syncs = 0
        """Reads of device values by the host (``.cpu()``, ``.item()``, ``float(t)``, ``if t:`` ...):
        each one waits for the GPU's queue to drain."""

    def __enter__(self):
        # nn.Parameter(t) (also what deepcopy of a module does) makes a new Python object in C++,
        # outside the mode: it keeps t's device
        self._param_new = torch.nn.Parameter.__new__
        original = self._param_new

        def new(cls, data=None, requires_grad=True):
            out = original(cls, data, requires_grad)
            return _tag(out) if on_fake_cuda(data) else out

        torch.nn.Parameter.__new__ = new
        # code gated on torch.cuda.is_available() takes its GPU path; the CUDA generator's state
        # (checkpoints keep it) is a stand-in byte tensor
        self._cuda = {k: getattr(torch.cuda, k) for k in ("is_available", "get_rng_state", "set_rng_state")}
        rng = {"state": torch.zeros(16, dtype=torch.uint8)}
        torch.cuda.is_available = lambda: True
        torch.cuda.get_rng_state = lambda device="cuda": rng["state"].clone()
        torch.cuda.set_rng_state = lambda state, device="cuda": rng.__setitem__("state", state.clone())
        return super().__enter__()

    def __exit__(self, *exc):
        torch.nn.Parameter.__new__ = self._param_new
        for k, f in self._cuda.items():
            setattr(torch.cuda, k, f)
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        prop = _property(func)
        if prop is not None:  # attribute access: device queries, .grad, .data
            name, op = prop
            t = args[0]
            if op == "__get__" and name == "device":
                return CUDA if on_fake_cuda(t) else func(*args)
            if op == "__get__" and name in ("is_cuda", "is_cpu"):
                return on_fake_cuda(t) == (name == "is_cuda")
            if op == "__get__":  # .grad, .data, .T, .mT ...: same device as t
                out = func(*args)
                return _tag(out) if isinstance(out, torch.Tensor) and on_fake_cuda(t) else out
            if op == "__set__" and name == "data":
                func(*args)
                if on_fake_cuda(args[1]):
                    _tag(t)
                elif hasattr(t, _TAG):
                    delattr(t, _TAG)
                return None
            return func(*args, **kwargs)
        if func is torch._C._nn._parse_to:  # only parses Module.to's arguments
            return func(*args, **kwargs)
        if func is torch.Tensor.get_device:
            return 0 if on_fake_cuda(args[0]) else -1
        if func in _NUMPY:
            if on_fake_cuda(args[0]):
                raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the "
                                "tensor to host memory first.")
            return func(*args, **kwargs)
        if func in _TO_HOST:
            out = func(*args, **kwargs)
            if on_fake_cuda(args[0]):
                self.syncs += 1
                return out.clone()
            return out
        if func in _READS:
            self.syncs += on_fake_cuda(args[0])
            return func(*args, **kwargs)
        if func is torch.Tensor.cuda:
            return _tag(args[0].clone() if not on_fake_cuda(args[0]) else args[0])
        if func is torch.Tensor.to:
            out = self._to(func, args, kwargs)
            self.syncs += on_fake_cuda(args[0]) and not on_fake_cuda(out)
            return out
        # factory functions and new_* with device=
        explicit = kwargs.get("device") is not None and _is_device(kwargs["device"])
        to_cuda = explicit and _is_cuda(kwargs["device"])
        if explicit:
            kwargs["device"] = "cpu"
        tensors = list(_tensors(args)) + list(_tensors(kwargs))
        tagged = [t for t in tensors if on_fake_cuda(t)]
        if tagged and func not in _NO_CHECK and torch._C._current_autograd_node() is None:
            self._check_mix(func, args, tensors)
        out = func(*args, **kwargs)
        if func is torch.Tensor.copy_:
            return out  # keeps the destination's device
        if to_cuda and isinstance(out, torch.Tensor) and not on_fake_cuda(out) and any(out is t for t in tensors):
            out = out.clone()  # e.g. torch.as_tensor(host, device="cuda") returned its input: never tag the caller's tensor
        if to_cuda or (tagged and not explicit):
            _tag(out)
        return out

    @staticmethod
    def _check_mix(func, args, tensors) -> None:
        if func in _INDEX:
            self_t = args[0]
            if not on_fake_cuda(self_t):
                raise DeviceMismatch("indices should be either on cpu or on the same device as the indexed tensor (cpu)")
            if func is torch.Tensor.__setitem__ and len(args) > 2:
                v = args[2]
                if isinstance(v, torch.Tensor) and not on_fake_cuda(v) and v.dim() > 0:
                    raise DeviceMismatch("Expected all tensors to be on the same device, but found at least two "
                                         "devices, cuda:0 and cpu! (setitem value)")
            return
        host = [t for t in tensors if not on_fake_cuda(t) and t.dim() > 0]
        if host:
            name = getattr(func, "__name__", str(func))
            raise DeviceMismatch(f"Expected all tensors to be on the same device, but found at least two devices, "
                                 f"cuda:0 and cpu! (in {name}, host tensor of shape {tuple(host[0].shape)})")

    @staticmethod
    def _to(func, args, kwargs):
        src = args[0]
        dev = kwargs.pop("device", None)
        rest = []
        for a in args[1:]:
            if dev is None and (_is_device(a) or isinstance(a, torch.Tensor)):
                dev = a
                if isinstance(a, torch.Tensor):
                    rest.append(a.dtype)
            else:
                rest.append(a)
        if dev is None:  # dtype / memory-format only: same device
            out = func(src, *rest, **kwargs)
            return _tag(out) if on_fake_cuda(src) else out
        if _is_cuda(dev):
            out = func(src, "cpu", *rest, **kwargs)
            if out is src and not on_fake_cuda(src):
                out = src.clone() if not isinstance(src, torch.nn.Parameter) else src.detach().clone()
            return _tag(out)
        out = func(src, "cpu", *rest, **kwargs)
        if on_fake_cuda(src) and out is src:
            out = src.clone()
        return out
