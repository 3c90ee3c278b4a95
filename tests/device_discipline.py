"""A CPU-runnable checker for device bugs that only show on an accelerator, and a host-sync counter.

On CPU every tensor and every generator lives on one device, so code that forgets to say where a
tensor goes runs fine here and crashes (or silently copies and syncs) on CUDA. The first crash of
``recipes:tlcm-full`` on an H200 was exactly that: ``torch.randint(1, n, (1,), generator=g)`` with
the step's CUDA generator and no ``device=`` draws on the default device (CPU) and raises
"Expected a 'cpu' device type for generator but found 'cuda'". ``DeviceDiscipline`` is a
``torch.overrides.TorchFunctionMode`` that makes that class of bug fail on CPU:

1. Generator draws (always on). Every random draw that passes a ``generator`` (torch.randn, rand,
   randint, randperm, normal, bernoulli, multinomial, poisson, randn_like, ..., Tensor.normal_,
   uniform_, random_, exponential_, ..., nn.init.*_) and is reached from tlcm code must state its
   output device: factory draws (randn/rand/randint/randperm/normal from sizes) need ``device=`` (or
   ``out=``) equal to the generator's device; draws from a tensor (*_like, in-place, bernoulli,
   multinomial, normal from tensors) take that tensor's device, which must equal the generator's.
   A draw that falls back to the default device works on CPU and breaks on CUDA.
2. Tensor factories inside a training step (``factories=True``). torch.tensor/as_tensor/zeros/ones/
   full/empty/arange/linspace/logspace/eye/rand* called directly by tlcm code (the first frame outside
   torch is under tlcm/; library internals are exempt) with no ``device=`` while a step runs
   (a ``Trainer._step``, or any ``Loss``'s ``forward``/``aux_step``/``after_student_step``, on the stack)
   and returning a tensor with at least one dimension. Such a tensor lands on the CPU: mixing it with
   CUDA tensors fails (only 0-dim CPU tensors mix, as scalars: those are allowed), and moving it
   costs a host-to-device copy each step. Code that wants a host tensor says ``device="cpu"``.
3. Host syncs (``count_syncs=True``, counted, never an error): Tensor.item/tolist/numpy/cpu,
   __bool__/__float__/__int__/__index__/__format__, nonzero/argwhere/masked_select/unique,
   torch.equal/allclose, repeat_interleave with tensor repeats, indexing with a boolean mask, and
   blocking copies to a device that tlcm code makes itself (``.to(device)``, ``.cuda()``,
   ``torch.tensor(data, device=d)``: PyTorch syncs the stream after a copy that is not
   ``non_blocking``), counted per call site (first frame under tlcm/, "via" the library frame that
   made the call) and per "in a training step or not". On CPU every tensor is a host tensor, so
   these are the sites that sync WHEN their tensor is on the accelerator: a read of a tensor that
   is on the host in production too (a milestone table, a CPU generator's draw) is counted but
   costs nothing, and so is a ``.to(device)`` of a tensor already there. torch.optim's ``.item()``
   on its host step counters is not counted.
4. Device syncs (``count_syncs=True``): ``device_syncs`` counts, with the same keys, the syncs above
   that WOULD wait for the accelerator: reads of device tensors, copies of device tensors to the
   host, blocking copies of host tensors to the device. Every tensor is placed as it is made, as
   production would place it: on the host are factory outputs (torch.arange, torch.tensor, ...),
   draws with a host generator (one in ``host_generators``, or ``device="cpu"`` spelled as a
   string), ``.cpu()`` / ``.to("cpu")`` copies and what is computed from host tensors only; on the
   device are parameters, tensors made before the mode (model weights), draws with any other
   generator (the step's), ``.to(device)`` copies (given a torch.device: an alias on CPU, so the
   host original stays on the host) and whatever a device tensor went into. A test simulates an
   accelerator step by handing ``StepContext.host_generator`` a registered host generator.

A violation raises ``AssertionError`` at the call (op, tlcm file:line, devices) and is also kept in
``violations``; leaving the mode raises again if any were recorded (in case a broad ``except`` in
the code under test swallowed the first). ``strict=False`` only records (to survey a whole run).
Only ops that pass through ``__torch_function__`` are seen: C++ internals of an op, autograd's
backward and the inside of Python-level torch functions (F.*, nn.init.*) are not.

Use: ``with DeviceDiscipline(): train(recipe)``; test modules opt into the autouse fixture with
``from device_discipline import device_discipline  # noqa: F401``. A test that expects a violation
puts ``pytest.raises`` outside the mode (``with pytest.raises(AssertionError), DeviceDiscipline():``).
"""

from __future__ import annotations

import sys
from collections import Counter
from inspect import isfunction, signature
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

import tlcm

TLCM_DIR = str(Path(tlcm.__file__).resolve().parent) + "/"
TORCH_DIR = str(Path(torch.__file__).resolve().parent) + "/"
ROOT = str(Path(tlcm.__file__).resolve().parent.parent) + "/"
THIS_FILE = str(Path(__file__).resolve())

T = torch.Tensor
FACTORY_DRAWS = {torch.randn, torch.rand, torch.randint, torch.randperm}
"""Draws whose output device is only ever ``device=`` (or ``out=``), never an argument tensor's."""
FACTORIES = FACTORY_DRAWS | {
    torch.tensor,
    torch.as_tensor,
    torch.zeros,
    torch.ones,
    torch.full,
    torch.empty,
    torch.empty_strided,
    torch.arange,
    torch.linspace,
    torch.logspace,
    torch.eye,
    torch.normal,
    torch.tril_indices,
    torch.triu_indices,
}
"""Functions whose result lands on the default device unless told otherwise."""
SYNCS = {
    T.item: "item",
    T.tolist: "tolist",
    T.numpy: "numpy",
    T.__array__: "__array__",
    T.cpu: "cpu",
    T.__bool__: "__bool__",
    T.__float__: "__float__",
    T.__int__: "__int__",
    T.__index__: "__index__",
    T.__complex__: "__complex__",
    T.__format__: "__format__",
    T.__repr__: "__repr__",
    T.__contains__: "__contains__",
    T.nonzero: "nonzero",
    torch.nonzero: "nonzero",
    T.argwhere: "argwhere",
    torch.argwhere: "argwhere",
    T.masked_select: "masked_select",
    torch.masked_select: "masked_select",
    T.unique: "unique",
    torch.unique: "unique",
    torch.unique_consecutive: "unique_consecutive",
    T.equal: "equal",
    torch.equal: "equal",
    T.allclose: "allclose",
    torch.allclose: "allclose",
}
"""Ops that wait for the device (a value or a data-dependent shape must reach the host)."""
INDEXING = {T.__getitem__: "x[bool mask]", T.__setitem__: "x[bool mask] ="}
REPEAT = {T.repeat_interleave, torch.repeat_interleave}
COPIES = {T.to, T.cuda, torch.tensor, torch.as_tensor}
"""Ops that copy host data to a device: a blocking copy (non_blocking=False, the default) waits for
the device's stream (PyTorch's memcpy_and_sync), so it is a host sync too."""
POSITIONAL_GENERATOR = {
    f
    for n in dir(nn.init)  # not nn.init.__all__: torch 2.6 has none
    if n[0] != "_" and isfunction(f := getattr(nn.init, n)) and "generator" in signature(f).parameters
}
"""Draws that may take the generator positionally (nn.init.uniform_(t, a, b, g)); any other torch op
takes it as ``generator=`` only (looking through every op's arguments would be slow)."""
HOST = "_tlcm_host"
"""Attribute set on tensors that live on the host in production (``DeviceDiscipline._place``)."""
STEP_METHODS = {"_step", "forward", "aux_step", "after_student_step"}
"""Trainer._step and Loss.forward/aux_step/after_student_step: a training step runs below them."""


WRAPPER_FILES = ("_tensor.py", "overrides.py", "functional.py", "utils/_device.py", "_jit_internal.py")
TORCH_WRAPPERS = tuple(TORCH_DIR + f for f in WRAPPER_FILES)
"""torch files that only forward an op (Tensor.__format__, torch.unique, ...): never a "via" frame."""
HOST_COUNTERS = (TORCH_DIR + "optim/",)
"""Library code whose syncs are on host tensors: torch.optim keeps Adam's ``step`` counters on the CPU
(unless capturable/fused), so its ``.item()`` calls never wait for the device."""


def _short(filename: str) -> str:
    return filename[len(ROOT) :] if filename.startswith(ROOT) else filename


def _is_this(frame) -> bool:
    return frame.f_code.co_filename == THIS_FILE


def _owner(frame, roots: tuple[str, ...]):
    """The innermost frame under ``roots`` (tlcm/): None if the op was not reached from that code."""
    while frame is not None and not frame.f_code.co_filename.startswith(roots):
        frame = frame.f_back
    return frame


def _in_step(frame) -> bool:
    """Whether a training step runs: a Trainer._step or a Loss's forward/aux_step/after_student_step
    on the stack (so losses called directly by tests count too)."""
    from tlcm.engine import Trainer
    from tlcm.losses.base import Loss

    while frame is not None:
        if frame.f_code.co_name in STEP_METHODS and isinstance(frame.f_locals.get("self"), Trainer | Loss):
            return True
        frame = frame.f_back
    return False


def _where(frame) -> str:
    return f"{_short(frame.f_code.co_filename)}:{frame.f_lineno}"


def _origin(frame):
    """The innermost frame that is not a torch op wrapper or this file (may be torch.optim, torch.nn)."""
    while frame is not None and (frame.f_code.co_filename.startswith(TORCH_WRAPPERS) or _is_this(frame)):
        frame = frame.f_back
    return frame


def _site(frame, roots: tuple[str, ...]) -> str:
    """'tlcm/x.py:12' (first frame under tlcm/), with ' via lib.py:34' when a library made the call."""
    origin, owner = _origin(frame), _owner(frame, roots)
    if owner is None:
        return _where(origin) if origin is not None else "?"
    return _where(owner) if origin is owner else f"{_where(owner)} via {_where(origin)}"


def _name(func) -> str:
    qual = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
    if qual.startswith(("TensorBase.", "Tensor.")):
        return "Tensor." + qual.split(".", 1)[1]
    if qual.startswith("_VariableFunctionsClass."):
        return "torch." + qual.split(".", 1)[1]
    module = getattr(func, "__module__", "") or ""
    return f"{module}.{qual}" if module.startswith("torch.nn") else f"torch.{qual}"


def _same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def _first_tensor(args, kwargs) -> torch.Tensor | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value
    return None


def _copy_kind(func, args, kwargs) -> str | None:
    """ "cpu" for a copy to the host, "to(device)" / "tensor(data, device=)" for a blocking copy to a
    device given as a torch.device, a tensor or a non-"cpu" string (on CPU it is the CPU, in
    production the accelerator: a host->device copy if the source is on the host, else a no-op);
    None for a dtype-only ``.to`` or a non-blocking copy."""
    if kwargs.get("non_blocking") or any(a is True for a in args[2:]):
        return None
    if func is T.cuda:
        return "to(device)"
    if func in (torch.tensor, torch.as_tensor):
        data, target = (args[0] if args else kwargs.get("data")), kwargs.get("device")
        if target is None or isinstance(data, torch.Tensor):
            return None
        return None if target == "cpu" else "tensor(data, device=)"
    targets = [a for a in args[1:] if isinstance(a, str | torch.device | torch.Tensor)]
    target = kwargs.get("device", targets[0] if targets else None)
    if target is None:
        return None
    return "cpu" if target == "cpu" and isinstance(target, str) else "to(device)"


def _inputs(args, kwargs) -> list[torch.Tensor]:
    """The tensors among an op's arguments, one level into lists and tuples (torch.cat, stack)."""
    found = []
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, list | tuple):
            found.extend(v for v in value if isinstance(v, torch.Tensor))
    return found


def _on_host(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` lives on the host in production (see rule 4): placed there by ``_place``;
    parameters and untagged tensors (made before the mode) live on the device."""
    return getattr(tensor, HOST, False) and not isinstance(tensor, nn.Parameter)


def _copy_target(func, args, kwargs) -> bool | None:
    """Where a ``.cpu()`` / ``.cuda()`` / ``.to(...)`` copy goes: True host, False device, None no
    device change (``.to(dtype)``, not a copy op). A torch.device stands for the accelerator, the
    string "cpu" for the host, a tensor for its own place."""
    if func is T.cpu or func is T.cuda:
        return func is T.cpu
    if func is not T.to:
        return None
    targets = [a for a in args[1:] if isinstance(a, str | torch.device | torch.Tensor)]
    target = kwargs.get("device", targets[0] if targets else None)
    if target is None:
        return None
    if isinstance(target, torch.Tensor):
        return _on_host(target)
    return isinstance(target, str) and target.startswith("cpu")


def _bool_mask(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool and i.dim() > 0 for i in items)


class DeviceDiscipline(TorchFunctionMode):
    """See the module docstring. ``violations``: messages of the rule breaks seen; ``syncs``:
    Counter of (label, site, op, in_step) when ``count_syncs``; set ``label`` to group syncs
    (e.g. by phase). ``roots``: path prefixes of the code that is policed and counted (default the
    tlcm package; the checker's own tests add their file)."""

    def __init__(
        self,
        *,
        factories: bool = True,
        count_syncs: bool = False,
        strict: bool = True,
        roots: tuple[str, ...] = (TLCM_DIR,),
    ) -> None:
        super().__init__()
        self.factories, self.count_syncs, self.strict, self.roots = factories, count_syncs, strict, roots
        self.violations: list[str] = []
        self.syncs: Counter[tuple[str, str, str, bool]] = Counter()
        self.device_syncs: Counter[tuple[str, str, str, bool]] = Counter()
        # a set, not a WeakSet: torch 2.11's Generator cannot be weakly referenced
        self.host_generators: set[torch.Generator] = set()
        self.label = ""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        generator = kwargs.get("generator")
        if generator is None and func in POSITIONAL_GENERATOR:
            generator = next((a for a in args if type(a) is torch.Generator), None)
        elif generator is not None and type(generator) is not torch.Generator:
            generator = None  # e.g. a list of generators handed to a Python-level helper
        if generator is not None:
            self._check_draw(func, args, kwargs, generator)
        if self.count_syncs:
            self._count_sync(func, args, kwargs)
        out = func(*args, **kwargs)
        if self.count_syncs:
            out = self._place(func, args, kwargs, generator, out)
        if (
            func in FACTORIES
            and self.factories
            and generator is None
            and "device" not in kwargs
            and "out" not in kwargs
            and isinstance(out, torch.Tensor)
            and out.dim() > 0
            and not (func is torch.as_tensor and isinstance(args[0] if args else None, torch.Tensor))
        ):
            self._check_factory(func, out)
        return out

    def _check_draw(self, func, args, kwargs, generator: torch.Generator) -> None:
        frame = sys._getframe(2)
        if _owner(frame, self.roots) is None:
            return  # test or library code drawing on its own; only tlcm's draws are policed
        if "device" in kwargs or "out" in kwargs:
            stated = kwargs["out"].device if "out" in kwargs else torch.device(kwargs["device"])
            how = f"device={stated}"
        elif func not in FACTORY_DRAWS and (tensor := _first_tensor(args, kwargs)) is not None:
            stated, how = tensor.device, f"its input tensor on {tensor.device}"
        else:
            stated, how = None, f"no device= (falls back to the default device {torch.get_default_device()})"
        if stated is None or not _same_device(stated, generator.device):
            site = _site(frame, self.roots)
            self._fail(
                f"{_name(func)} at {site} draws with a generator on {generator.device} and {how}; state "
                "the output device: device=generator.device (then move what the host needs, once)"
            )

    def _check_factory(self, func, out: torch.Tensor) -> None:
        frame = sys._getframe(2)  # the op's direct caller: torch's own factories (torch 2.11's
        # non-reentrant checkpoint makes a (0,) dummy) and other libraries' are not policed
        if not frame.f_code.co_filename.startswith(self.roots) or not _in_step(frame):
            return
        self._fail(
            f"{_name(func)} at {_site(frame, self.roots)} makes a {tuple(out.shape)} tensor inside a "
            f"training step with no device= (lands on the default device {out.device}); pass device= "
            '(the batch\'s device, or "cpu" for a tensor meant for the host)'
        )

    def _count_sync(self, func, args, kwargs) -> None:
        op = SYNCS.get(func)
        if op is None and func in INDEXING and len(args) > 1 and _bool_mask(args[1]):
            op = INDEXING[func]
        if op is None and func in REPEAT:
            repeats = args[1] if len(args) > 1 else kwargs.get("repeats")
            if isinstance(repeats, torch.Tensor) and repeats.dim() > 0 and "output_size" not in kwargs:
                op = "repeat_interleave"
        copy = op is None and func in COPIES
        if copy:
            op = _copy_kind(func, args, kwargs)
        if op is None:
            return
        frame = sys._getframe(2)
        origin = _origin(frame)
        if origin is not None and origin.f_code.co_filename.startswith(HOST_COUNTERS):
            return
        if copy and (origin is None or not origin.f_code.co_filename.startswith(self.roots)):
            return  # libraries' .to(device) (Module.to, clip_grad_norm_) move what is mostly there
        if _owner(frame, self.roots) is not None:
            key = (self.label, _site(frame, self.roots), op, _in_step(frame))
            self.syncs[key] += 1
            if self._waits(op, args, kwargs):
                self.device_syncs[key] += 1

    def _waits(self, op: str, args, kwargs) -> bool:
        """Whether sync ``op`` waits for the accelerator (rule 4): a read or ``.cpu()`` of a device
        tensor, a blocking copy of host data to the device."""
        if op == "tensor(data, device=)":
            return True
        if op == "to(device)":
            return _on_host(args[0])
        return not all(_on_host(t) for t in _inputs(args, kwargs))

    def _place(self, func, args, kwargs, generator, out):
        """Tag ``out`` host or device as production would place it (rule 4); a copy of a host tensor
        to the device that returned the tensor itself (CPU) returns an alias, tagged device."""
        target = _copy_target(func, args, kwargs)
        if target is not None:
            host = target
            if out is args[0] and not host and _on_host(out):
                out = out.view_as(out)
        elif generator is not None:
            host = generator in self.host_generators or kwargs.get("device") == "cpu"
        elif func in FACTORIES and not isinstance(args[0] if args else kwargs.get("data"), torch.Tensor):
            host = True
        else:
            inputs = _inputs(args, kwargs)
            if any(out is t for t in inputs):
                return out  # in place (or returned as is): keeps its place
            host = all(_on_host(t) for t in inputs)
        for tensor in out if isinstance(out, list | tuple) else (out,):
            if isinstance(tensor, torch.Tensor):
                setattr(tensor, HOST, host)
        return out

    def _fail(self, message: str) -> None:
        self.violations.append(message)
        if self.strict:
            raise AssertionError(f"device discipline: {message}")

    def __exit__(self, exc_type, exc, tb):
        result = super().__exit__(exc_type, exc, tb)
        if exc_type is None and self.strict and self.violations:
            raise AssertionError("device discipline: " + "\n".join(dict.fromkeys(self.violations)))
        return result

    def sync_table(self, in_step: bool | None = True, device: bool = False) -> list[tuple]:
        """(label, site, op, count) rows, sorted by label then count (in_step None: all syncs;
        ``device``: only the device syncs)."""
        rows = [
            (label, site, op, n)
            for (label, site, op, step), n in (self.device_syncs if device else self.syncs).items()
            if in_step is None or step == in_step
        ]
        return sorted(rows, key=lambda r: (r[0], -r[3], r[1]))


@pytest.fixture(autouse=True)
def device_discipline():
    """Every test of a module that imports this fixture runs under ``DeviceDiscipline()``."""
    with DeviceDiscipline() as mode:
        yield mode
