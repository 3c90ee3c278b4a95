"""Replayed no-grad network calls (``--recipes.runtime.graphs``): capture a call once per input
shape, then replay it, for small networks whose steps are bound by the host launching kernels
(the miniature: ~800 kernels per UNet call, ~10 no-grad calls per MLCD step; docs/design.md
"Compilation").

On CUDA a capture is a CUDA graph (``torch.cuda.graph``, one shared memory pool): a replay launches
the whole call at once. On the CPU it is an aten-op trace (``make_fx``) with the same semantics,
so the CPU tests see what a CUDA graph would do: Python-level decisions (which LoRA adapter is on,
autocast, the shapes) are frozen at capture, weights are read where they live at replay (an
optimizer's in-place update is seen), inputs are copied into static buffers and the output is a
static buffer (cloned on return); a host read of a tensor (``.item()``, ``nonzero``), which a CUDA
capture cannot hold, is refused. Replaying the trace also skips the modules' Python (CPU: ~30 %
of a batch-1 UNet call).

What is frozen is the key of a capture: the adapter selection (peft's flags of the network's
first LoRA layer, set uniformly by ``AdapterSwitch``), train / eval mode, autocast, inference
mode, which conditioning fields are present and every input's shape and dtype. Calls with
gradients run eagerly; so do functional calls with swapped weights (EMA targets, DPO
references), which do not come here.
"""

from __future__ import annotations

import weakref
from contextlib import nullcontext
from dataclasses import dataclass, fields

import torch
from peft.tuners.tuners_utils import BaseTunerLayer

from tlcm.conditioning import Conditioning
from tlcm.errors import TLCMError

HOST_READS = {
    torch.ops.aten._local_scalar_dense.default,  # .item(), .tolist(), bool(tensor)
    torch.ops.aten.nonzero.default,
    torch.ops.aten.masked_select.default,
}
"""aten ops that read device values on the host (a sync): a CUDA graph capture fails on them."""
WARMUP_CALLS = 1
"""Eager calls on a side stream before a CUDA capture (lazy initialisations: cuBLAS workspaces)."""


def _flatten(x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> tuple[list[torch.Tensor], tuple]:
    """The call's tensors [x, t, cond's present fields] and which cond fields are present."""
    present = tuple(f.name for f in fields(cond) if getattr(cond, f.name) is not None)
    return [x, t, *(getattr(cond, name) for name in present)], present


def _unflatten(leaves, present: tuple) -> tuple:
    x, t, *values = leaves
    return x, t, Conditioning(**dict(zip(present, values, strict=True)))


def _selection(net: torch.nn.Module, layers: dict) -> tuple:
    """peft's adapter flags of ``net``'s first LoRA layer (what its forward runs), () without."""
    if net not in layers:
        layers[net] = next((m for m in net.modules() if isinstance(m, BaseTunerLayer)), None)
    layer = layers[net]
    if layer is None:
        return ()
    return (layer._disable_adapters, tuple(layer.active_adapters), layer.merged)


def _reads_on_host(node: torch.fx.Node) -> bool:
    """Whether a traced op syncs: one of ``HOST_READS``, or indexing by a boolean mask."""
    if node.target in HOST_READS:
        return True
    if node.target is not torch.ops.aten.index.Tensor:
        return False
    masks = [i for i in node.args[1] if isinstance(i, torch.fx.Node)]
    return any(getattr(i.meta.get("val"), "dtype", None) == torch.bool for i in masks)


def _refusal(why: str) -> TLCMError:
    return TLCMError(
        f"a no-grad call of the denoising network cannot be captured ({why}): drop --recipes.runtime.graphs"
    )


@dataclass
class Captured:
    """One captured call: static inputs, the static output and how to replay."""

    inputs: list[torch.Tensor]
    output: torch.Tensor
    replay: object  # () -> None: recompute ``output`` from ``inputs``

    def __call__(self, leaves: list[torch.Tensor]) -> torch.Tensor:
        for static, value in zip(self.inputs, leaves, strict=True):
            static.copy_(value)
        self.replay()
        return self.output.clone()  # the static output is overwritten by the next replay


class CallGraphs:
    """Captures and replays no-grad calls ``fn(x (B, ...), t (B,), cond) -> output (B, ...)`` of
    networks on ``device`` (CUDA graphs on CUDA, aten traces elsewhere); ``captures`` and
    ``replays`` count them."""

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.pool = torch.cuda.graph_pool_handle() if self.cuda else None
        self._graphs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # net -> {key: Captured}
        self._layers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # net -> first LoRA layer
        self.captures = self.replays = 0

    def clear(self) -> None:
        """Drop every capture (after weights were replaced rather than updated in place: a merge)."""
        self._graphs = weakref.WeakKeyDictionary()
        self._layers = weakref.WeakKeyDictionary()

    def _key(self, net: torch.nn.Module, leaves: list[torch.Tensor], present: tuple) -> tuple:
        kind = self.device.type
        autocast = torch.is_autocast_enabled(kind) and torch.get_autocast_dtype(kind)
        shapes = tuple((tuple(v.shape), v.dtype) for v in leaves)
        return (
            _selection(net, self._layers),
            net.training,
            autocast,
            torch.is_inference_mode_enabled(),
            present,
            shapes,
        )

    def __call__(self, net: torch.nn.Module, fn, x: torch.Tensor, t: torch.Tensor, cond: Conditioning):
        """``fn(x, t, cond)`` (a call of ``net``) replayed from its capture; captured first if new.
        Must run without gradients (the caller's check)."""
        leaves, present = _flatten(x, t, cond)
        graphs = self._graphs.setdefault(net, {})
        key = self._key(net, leaves, present)
        if key not in graphs:
            graphs[key] = self._capture(lambda *v: fn(*_unflatten(v, present)), leaves)
            self.captures += 1
        self.replays += 1
        return graphs[key](leaves)

    def _capture(self, flat_fn, leaves: list[torch.Tensor]) -> Captured:
        static = [v.detach().clone() for v in leaves]
        if not self.cuda:
            return self._trace(flat_fn, static)
        kind, autocast = self.device.type, nullcontext()
        if torch.is_autocast_enabled(kind):  # casts inside the graph, none from the cache (freed after it)
            autocast = torch.autocast(kind, torch.get_autocast_dtype(kind), cache_enabled=False)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with autocast, torch.cuda.stream(side):
            for _ in range(WARMUP_CALLS):
                flat_fn(*static)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        try:
            # thread_local: another thread's CUDA work (a checkpoint writer) does not void the capture
            with autocast, torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
                output = flat_fn(*static)
        except RuntimeError as err:
            raise _refusal(str(err).splitlines()[0]) from err
        return Captured(static, output, graph.replay)

    def _trace(self, flat_fn, static: list[torch.Tensor]) -> Captured:
        """The CPU's capture: an aten-op trace of one call (it runs the call once). Compiled blocks
        (``--recipes.runtime.compile``) are traced as their eager ops: the CPU's replay runs eager
        kernels, a CUDA graph the compiled ones."""
        import torch._dynamo
        from torch._guards import TracingContext, tracing
        from torch._subclasses.fake_tensor import FakeTensorMode
        from torch.fx.experimental.proxy_tensor import make_fx

        # one fake mode for the trace's shape metadata: make_fx otherwise builds one per traced
        # value (a stack capture each: 0.85 s instead of 0.36 s per tiny-UNet capture, measured)
        shapes = TracingContext(FakeTensorMode(allow_fallback_kernels=True))
        try:
            with torch._dynamo.config.patch(error_on_nested_fx_trace=False), tracing(shapes):
                traced = make_fx(flat_fn)(*static)  # compiled blocks: their eager ops
        except RuntimeError as err:  # make_fx: a host read of a value computed from the inputs
            raise _refusal(str(err).split(" - ")[0]) from err
        reads = sorted({str(n.target) for n in traced.graph.nodes if _reads_on_host(n)})
        if reads:  # of a value that is not (a weight's): the trace froze it, a CUDA capture fails
            raise _refusal(f"it reads tensor values on the host: {', '.join(reads)}")
        output = traced(*static)

        def replay() -> None:
            output.copy_(traced(*static))

        return Captured(static, output, replay)
