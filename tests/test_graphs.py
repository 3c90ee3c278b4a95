"""--recipes.runtime.graphs (tlcm/models/graphs.py): no-grad network calls captured once per shape
and replayed. On the CPU the capture is an aten-op trace with a CUDA graph's semantics (frozen
Python decisions, static inputs and output, live weights), so these tests check the keying and
buffering that a CUDA graph relies on. The engine-level check, every loss's gradients bit for bit
with and without, is in tests/test_loss_contract.py."""

import contextlib
import inspect

import pytest
import torch

import tlcm.models.student
from tlcm.config import StudentConfig
from tlcm.diffusion.schedule import schedule_from_config
from tlcm.errors import TLCMError
from tlcm.models.base import BaseModel
from tlcm.models.families import FAMILIES
from tlcm.models.graphs import CallGraphs
from tlcm.models.student import Student


def _student(pipe) -> Student:
    family = FAMILIES[type(pipe).__name__]
    base = BaseModel(
        pipe, schedule_from_config(pipe.scheduler.config), None, family, family.latent_shape(pipe)
    )
    base.net.requires_grad_(False)
    student = Student(base, StudentConfig(lora_rank=4, lora_alpha=4.0))
    torch.manual_seed(1)
    with torch.no_grad():
        for p in student.trainable_parameters().values():
            p.copy_(torch.randn_like(p) * 0.1)  # the LoRA changes the output: adapters are told apart
    student.use_graphs()
    return student


def _inputs(student: Student, seed: int, batch: int = 2):
    generator = torch.Generator().manual_seed(seed)
    cond, _ = student.base.encode(["a", "b", "c"][:batch])
    x = torch.randn(batch, *student.base.latent_shape, generator=generator)
    t = student.base.schedule.discretize(torch.rand(batch, generator=generator) * 900 + 50)
    return x, t, cond


def _eager(student: Student, call, x, t, cond):
    graphs, student.base.graphs = student.base.graphs, None
    try:
        return call()(x, t, cond)
    finally:
        student.base.graphs = graphs


@pytest.mark.parametrize("which", ["sd", "sdxl", "sd3", "flux"])
def test_replayed_calls_equal_eager_calls(which, request):
    """Teacher (adapters off) and student (LoRA on) at one shape: each replay equals its eager call
    bit for bit, on new inputs (static buffers refreshed), and a returned output is not overwritten
    by the next replay. A key without the adapter selection replays the student for the teacher."""
    student = _student(request.getfixturevalue(f"tiny_{which}"))
    graphs = student.base.graphs
    with torch.no_grad():
        first = {}
        for seed in (0, 1):
            x, t, cond = _inputs(student, seed)
            for name, call in (("teacher", student.teacher), ("student", student.denoiser)):
                out = call()(x, t, cond)
                assert torch.equal(out, _eager(student, call, x, t, cond)), (which, name, seed)
                first.setdefault(name, (out, _eager(student, call, x, t, cond)))
        assert not torch.equal(first["teacher"][1], first["student"][1])  # the LoRA matters
        assert all(torch.equal(out, eager) for out, eager in first.values())  # not overwritten
    assert (graphs.captures, graphs.replays) == (2, 4)


def test_each_shape_and_mode_is_its_own_capture(tiny_sd):
    """Another batch, train vs eval mode, autocast and inference mode are captured apart; a
    repeated call is not captured again."""
    student = _student(tiny_sd)
    graphs, net = student.base.graphs, student.net
    x, t, cond = _inputs(student, 0, batch=3)
    with torch.no_grad():
        student.denoiser()(x, t, cond)
        student.denoiser()(x[:2], t[:2], cond[:2])
        student.denoiser()(x[:2], t[:2], cond[:2])
        assert graphs.captures == 2
        net.train(not net.training)
        assert torch.equal(student.denoiser()(x, t, cond), _eager(student, student.denoiser, x, t, cond))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = student.denoiser()(x, t, cond)
            assert torch.equal(bf16, _eager(student, student.denoiser, x, t, cond))
    with torch.inference_mode():
        student.denoiser()(x, t, cond)
    assert graphs.captures == 5


def test_replays_read_the_weights_an_optimizer_updated(tiny_sd):
    """A capture reads the LoRA weights where they live: after an optimizer step (in place), the
    replay is the updated student's output, not the captured one's."""
    student = _student(tiny_sd)
    x, t, cond = _inputs(student, 0)
    with torch.no_grad():
        before = student.denoiser()(x, t, cond)
    params = list(student.trainable_parameters().values())
    loss = student.denoiser()(x, t, cond).square().mean()  # with gradients: eager
    loss.backward()
    torch.optim.SGD(params, lr=10.0).step()
    with torch.no_grad():
        after = student.denoiser()(x, t, cond)
        assert torch.equal(after, _eager(student, student.denoiser, x, t, cond))
    assert not torch.equal(before, after)
    assert student.base.graphs.captures == 1


def test_calls_with_gradients_run_eagerly(tiny_sd):
    """A call with gradients is never replayed: its gradient reaches the LoRA (a trace would not)."""
    student = _student(tiny_sd)
    x, t, cond = _inputs(student, 0)
    student.denoiser()(x, t, cond).square().mean().backward()
    grads = [p.grad for p in student.trainable_parameters().values()]
    assert all(g is not None for g in grads) and any(g.abs().max() > 0 for g in grads)
    assert student.base.graphs.captures == 0


def test_a_fused_student_is_captured_again(tiny_sd):
    """``fuse`` merges the LoRA into the base weights: later replays are the fused network's (a
    stale capture would add the LoRA twice)."""
    student = _student(tiny_sd)
    x, t, cond = _inputs(student, 0)
    with torch.no_grad():
        unfused = student.denoiser()(x, t, cond)
        student.fuse()
        fused = student.denoiser()(x, t, cond)
        assert torch.equal(fused, _eager(student, student.denoiser, x, t, cond))
    torch.testing.assert_close(fused, unfused, rtol=1e-4, atol=1e-5)


HOST_READS = {
    "item": (lambda out, t: out * float(t.max()), "_local_scalar_dense"),
    "nonzero": (lambda out, t: out + torch.nonzero(t).sum(), "nonzero"),
    "mask": (lambda out, t: out + out[out > 0].sum(), "index"),
}


@pytest.mark.parametrize("read", sorted(HOST_READS))
def test_a_host_read_in_the_call_is_refused(read, tiny_sd, monkeypatch):
    """A call that reads tensor values on the host (a sync: a CUDA capture fails on it) is refused,
    naming the op and the fix: .item() of an input, nonzero, a boolean mask."""
    student = _student(tiny_sd)
    family = student.base.family
    forward, (extra, op) = type(family).forward, HOST_READS[read]

    def reading(self, net, x, t, cond):
        return extra(forward(self, net, x, t, cond), t)

    monkeypatch.setattr(type(family), "forward", reading)
    x, t, cond = _inputs(student, 0)
    with torch.no_grad(), pytest.raises(TLCMError, match=f"{op}.*drop --recipes.runtime.graphs"):
        student.denoiser()(x, t, cond)


def test_graphs_are_refused_on_a_sharded_network(tiny_sd, monkeypatch):
    """FSDP2 gathers the weights into new memory at every call: no capture can follow them."""
    student = _student(tiny_sd)
    monkeypatch.setattr(tlcm.models.student, "is_sharded", lambda module: True)
    with pytest.raises(TLCMError, match="FSDP2"):
        student.use_graphs()


def test_the_cuda_branch_binds_to_torchs_own_signatures(tiny_sd, monkeypatch):
    """No CUDA here: torch.cuda's stream and graph API is replaced by fakes that bind every call to
    the real function's signature (a misspelt keyword, a missing argument fails as it would on the
    GPU) and run the captured call eagerly: the branch warms up on the side stream, captures into
    the shared pool, replays and returns the output. (CUDA autocast cannot be turned on here.)"""
    calls, real = [], {name: getattr(torch.cuda, name) for name in ("Stream", "CUDAGraph", "graph")}

    def fake(real, result=None):
        def call(*args, **kwargs):
            inspect.signature(real).bind(*args, **kwargs)
            calls.append((real.__name__, kwargs))
            return result() if result else None

        return call

    class Stream:
        def __init__(self, *args, **kwargs):
            inspect.signature(real["Stream"]).bind(*args, **kwargs)

        def wait_stream(self, stream):
            calls.append(("wait_stream", {}))

    class CUDAGraph:
        def __init__(self, *args, **kwargs):
            inspect.signature(real["CUDAGraph"]).bind(*args, **kwargs)

        def replay(self):
            calls.append(("replay", {}))

    @contextlib.contextmanager
    def graph(*args, **kwargs):
        inspect.signature(real["graph"]).bind(*args, **kwargs)
        calls.append(("graph", kwargs))
        yield

    cuda = torch.cuda
    monkeypatch.setattr(cuda, "graph_pool_handle", fake(cuda.graph_pool_handle, lambda: (0, 1)))
    monkeypatch.setattr(cuda, "current_stream", fake(cuda.current_stream, Stream))
    monkeypatch.setattr(cuda, "stream", fake(cuda.stream, contextlib.nullcontext))
    monkeypatch.setattr(cuda, "Stream", Stream)
    monkeypatch.setattr(cuda, "CUDAGraph", CUDAGraph)
    monkeypatch.setattr(cuda, "graph", graph)
    student = _student(tiny_sd)
    student.base.graphs = CallGraphs(torch.device("cuda"))  # its tensors stay on the CPU: fakes only
    x, t, cond = _inputs(student, 0)
    with torch.no_grad():
        out = student.denoiser()(x, t, cond)
    assert torch.equal(out, _eager(student, student.denoiser, x, t, cond))
    names = [name for name, _ in calls]
    assert names[-3:] == ["wait_stream", "graph", "replay"] and names.count("stream") == 1
    assert calls[-2][1]["pool"] == (0, 1)


def test_a_replay_leaves_the_callers_earlier_inputs_alone(tiny_sd):
    """A capture copies its inputs into buffers of its own: replaying it on new inputs writes into
    those buffers, never into the tensors of the call that made the capture (a caller still holds
    them: a sampler's latents, the step's noisy input)."""
    student = _student(tiny_sd)
    x0, t0, cond0 = _inputs(student, 0)
    kept = (x0.clone(), t0.clone(), cond0.prompt_embeds.clone())
    x1, t1, cond1 = _inputs(student, 1)
    with torch.no_grad():
        student.denoiser()(x0, t0, cond0)
        student.denoiser()(x1, t1, cond1)
    assert student.base.graphs.replays == 2 and student.base.graphs.captures == 1
    assert not torch.equal(x0, x1) and not torch.equal(t0, t1)
    for now, before in zip((x0, t0, cond0.prompt_embeds), kept, strict=True):
        assert torch.equal(now, before)
