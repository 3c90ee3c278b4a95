"""The GPU benchmark by direct calls (red-team round 14; no GPU: CUDA calls faked where a branch needs
them): gpu.py's model folders (built once, only those the selected sections need), the FLUX
inference section (FLUX's folder, 1024 px unless tiny), the FLUX student's export, a whole-miniature
fraction; gpu_runs' device sync on "cuda:0" and the PickScore stand-in; the speed section's peak
memory per variant, the forced SDPA kernel over the timed steps, a refused group, the compiled rows'
backend and dynamo's reset; the options' time limit; gpu.md's miniature, inference, projection,
model, FSDP and checkpointing tables; the full-size models' attention heads, projections and FLUX's
feature width, tiny folders saved in their dtype from a clean folder; the transformer family's
sharded blocks and LoRA layers; CallGraphs' capture keys (dtype, which conditioning fields) and its
CUDA branch's stream order and warm-up."""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from test_gpu_bench_units import _table
from torch.nn.attention import SDPBackend

from benchmarks import gpu, gpu_models, gpu_options, gpu_report, gpu_runs, gpu_speed
from tlcm.conditioning import Conditioning
from tlcm.models.graphs import CallGraphs

GIB = 2**30


class FakeTrainer:
    """``build_phase`` / ``train_step`` as the speed section calls them (one term: the step)."""

    def __init__(self, recipe=None) -> None:
        self.steps, self.denoiser_evals = [], 0
        self.base = SimpleNamespace(graphs=None)

    def build_phase(self, name, phase, step):
        return SimpleNamespace(phase=phase)

    def train_step(self, built, step):
        self.steps.append(step)
        return {"loss": torch.tensor(float(step))}, True


def _args(tmp_path, tiny: bool, sections: list[str]) -> SimpleNamespace:
    args = SimpleNamespace(device="cpu", work_dir=tmp_path, tiny=tiny, sections=sections, steps=2)
    args.time_limit, args.out, args.repeats = None, tmp_path, 3
    return args


def _bench(tmp_path, monkeypatch, tiny: bool = False, sections=("sdxl",)) -> gpu.Bench:
    report = gpu_report.Report(_args(tmp_path, tiny, list(sections)), "cpu")
    monkeypatch.setattr(report, "update", lambda: None)
    return gpu.Bench(report.args, report)


# ---- benchmarks/gpu.py --------------------------------------------------------------------------


def test_a_model_folder_is_built_once_and_reused_by_later_sections(monkeypatch, tmp_path):
    """SDXL's folder takes minutes of the GPU's time to build and save: the sections after "build"
    (sdxl, inference, speed, options) find it complete (its BUILT file) and do not build it again."""
    built = []

    def build_folder(kind, folder, device, tiny, t5):
        built.append(kind)
        folder.mkdir(parents=True)
        (folder / gpu_models.BUILT).write_text("{}")
        return {"unet": 1.0, "vae": 1.0, "saved_gb": 1.0}

    monkeypatch.setattr(gpu, "build_folder", build_folder)
    monkeypatch.setattr(gpu, "sync", lambda device: None)
    bench = _bench(tmp_path, monkeypatch)
    assert bench.ensure("sdxl") == bench.ensure("sdxl") == tmp_path / "sdxl"
    assert built == ["sdxl"]


def test_the_build_section_builds_only_the_folders_of_the_selected_sections(monkeypatch, tmp_path):
    """ "build,sdxl,inference" builds SDXL alone (not FLUX's 12 B or SD3's 8 B parameters);
    "build,sd3,flux-inference" builds SD3 and FLUX, in the benchmark's order."""
    for sections, kinds in (
        (["build", "sdxl", "inference"], ["sdxl"]),
        (["build", "sd3", "flux-inference"], ["sd3", "flux"]),
    ):
        bench, ensured = _bench(tmp_path, monkeypatch, sections=sections), []
        monkeypatch.setattr(bench, "ensure", ensured.append)
        bench.run("build")
        assert ensured == kinds


def test_the_flux_inference_section_times_flux_at_its_own_size_unless_tiny(monkeypatch, tmp_path):
    """flux-inference times the FLUX folder's student (not SDXL's) at the pipeline's 1024 px on a GPU;
    only tiny mode shrinks it to 16 px and 16 T5 tokens."""
    timed = []
    monkeypatch.setattr(gpu, "_untrained_student", lambda *a: None)
    monkeypatch.setattr(
        gpu,
        "time_inference",
        lambda kind, model, student, device, repeats, **size: timed.append((kind, size)),
    )
    for tiny in (False, True):
        bench = _bench(tmp_path, monkeypatch, tiny=tiny, sections=["flux-inference"])
        monkeypatch.setattr(bench, "ensure", lambda kind: tmp_path / kind)
        bench.run("flux-inference")
    assert timed == [
        ("flux", {}),
        ("flux", {"height": 16, "width": 16, "max_sequence_length": 16}),
    ]


def test_the_flux_section_exports_its_student_for_flux_inference(monkeypatch, tmp_path):
    """The flux section exports its trained student to WORK/flux-student (what flux-inference loads;
    without it that section times an untrained LoRA); sd3's is not exported (no sd3 inference)."""
    import tlcm.export

    exported = []

    def time_phases(recipe, preset, device, steps, allow, add):
        add({"phase": "(load)", "load_s": 1.0})
        return SimpleNamespace(student=f"{recipe.model.path.name} student", sharded=False)

    monkeypatch.setattr(gpu, "time_phases", time_phases)
    monkeypatch.setattr(gpu, "pickscore_folder", lambda folder: folder)
    monkeypatch.setattr(gpu, "free", lambda device: None)
    monkeypatch.setattr(tlcm.export, "export_student", lambda student, out: exported.append((student, out)))
    bench = _bench(tmp_path, monkeypatch, sections=["flux", "sd3"])
    monkeypatch.setattr(bench, "ensure", lambda kind: tmp_path / kind)
    for kind in ("flux", "sd3"):
        bench.train(bench.report.section(kind), kind)
    assert exported == [("flux student", tmp_path / "flux-student")]


def test_the_whole_miniature_is_a_fraction_of_1():
    """--mini-fraction 1 runs all of tlcm-full's steps: in (0, 1], accepted."""
    assert gpu.parse(["--device", "cpu", "--mini-fraction", "1"]).mini_fraction == 1.0


# ---- benchmarks/gpu_runs.py ---------------------------------------------------------------------


def test_a_numbered_cuda_device_is_synchronised_and_the_cpu_is_not(monkeypatch):
    """--device cuda:0 waits for the GPU before each clock read, as "cuda" does: without it a step's
    seconds are its launch only."""
    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: synced.append(a))
    gpu_runs.sync("cuda:0")
    gpu_runs.sync("cuda")
    gpu_runs.sync("cpu")
    assert len(synced) == 2


def test_the_preference_phase_reads_the_pickscore_stand_in(tmp_path):
    """The device has no network: the preference phase's reward model is the tiny CLIP folder made
    for it, not the preset's PickScore repository name."""
    from recipes.tlcm import tlcm_full_sdxl

    micro = gpu_runs.MICRO_BATCH["sdxl"]
    recipe = gpu_runs.phase_recipe(
        tlcm_full_sdxl(), Path("m"), tmp_path / "clip", Path("o"), "cuda", 1, micro, False
    )
    assert recipe.phases["preference"].losses["preference"].clip_folder == str(tmp_path / "clip")


# ---- benchmarks/gpu_speed.py --------------------------------------------------------------------


class FakeCudaMemory:
    """torch.cuda's allocator statistics: ``current`` bytes, and the peak since the last reset."""

    def __init__(self, monkeypatch) -> None:
        self.current = self.peak = 0
        monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: self.peak)
        monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", self.reset)

    def reset(self, *a) -> None:
        self.peak = self.current


def test_each_speed_variant_reports_its_own_peak_memory(monkeypatch):
    """Eager needs 10 GiB, flash 3 GiB: the flash row's peak is 3, not eager's 10 carried over."""
    memory = FakeCudaMemory(monkeypatch)
    monkeypatch.setattr(gpu_speed, "sync", lambda device: None)

    class Needs(FakeTrainer):
        def __init__(self, gib: int) -> None:
            super().__init__()
            self.gib = gib

        def train_step(self, built, step):
            memory.peak = max(memory.peak, memory.current + self.gib * GIB)
            return super().train_step(built, step)

    built = SimpleNamespace(phase=SimpleNamespace(batch_size=8))
    peaks = [gpu_speed.time_variant(Needs(gib), built, "cuda", 2, None)["peak_gib"] for gib in (10, 3)]
    assert peaks == pytest.approx([10.0, 3.0])


def test_a_forced_sdpa_kernel_holds_for_every_timed_step(monkeypatch):
    """ "eager, SDPA flash" times flash attention: the kernel is forced over the warm-up, the
    sync-counted and every timed step, not only the warm-up."""
    active: list = []

    @contextlib.contextmanager
    def sdpa_kernel(backend):
        active.append(backend)
        try:
            yield
        finally:
            active.pop()

    class Seen(FakeTrainer):
        def train_step(self, built, step):
            self.under = getattr(self, "under", []) + [list(active)]
            return super().train_step(built, step)

    monkeypatch.setattr(gpu_speed, "sdpa_kernel", sdpa_kernel)
    trainer, built = Seen(), SimpleNamespace(phase=SimpleNamespace(batch_size=8))
    gpu_speed.time_variant(trainer, built, "cpu", 3, "flash")
    assert trainer.steps == [0, 1, 2, 3, 4, 5]
    assert trainer.under == [[SDPBackend.FLASH_ATTENTION]] * 6


class QueuedDevice:
    """A GPU's clock: each step launches in 0.25 s of host time and queues 1 s of device work, which
    a ``sync`` waits for (all of it, whichever step queued it)."""

    def __init__(self) -> None:
        self.now, self.queued = 0.0, 0.0

    def perf_counter(self) -> float:
        return self.now

    def sync(self, device) -> None:
        self.now, self.queued = self.now + self.queued, 0.0


def test_the_first_timed_speed_step_does_not_pay_for_the_sync_counted_one(monkeypatch):
    """Every timed step is 0.25 s + its own 1 s, none 2.25 s (the sync-counted step's 1 s with it):
    with --steps 2 the SDXL rows' median is a mean, and would be 1.75 s. (A real bug found by round
    14, fixed: time_variant syncs after the sync-counted step.)"""
    device = QueuedDevice()

    class Queues(FakeTrainer):
        def train_step(self, built, step):
            device.now, device.queued = device.now + 0.25, device.queued + 1.0
            return super().train_step(built, step)

    monkeypatch.setattr(gpu_speed, "time", SimpleNamespace(perf_counter=device.perf_counter))
    monkeypatch.setattr(gpu_speed, "sync", device.sync)
    row = gpu_speed.time_variant(
        Queues(), SimpleNamespace(phase=SimpleNamespace(batch_size=8)), "cpu", 2, None
    )
    assert row["step_times_s"] == pytest.approx([1.25, 1.25])


def test_a_speed_group_the_time_limit_refuses_loads_nothing(monkeypatch):
    """Past the time limit each of the group's rows is reported skipped, and no Trainer is built
    (loading SDXL costs the device a minute)."""
    loaded, rows = [], []
    monkeypatch.setattr(
        gpu_speed, "load", lambda recipe, device: loaded.append(recipe) or (FakeTrainer(), None, 0)
    )
    plan = [("eager", None), ("eager, SDPA flash", "flash")]
    gpu_speed._group("recipe", plan, "cpu", 1, lambda: False, rows.append)
    assert loaded == []
    assert rows == [{"variant": v, "status": "skipped (time limit)"} for v, _ in plan]


def test_the_compiled_rows_use_the_backend_asked_for(monkeypatch, tmp_path):
    """compiled_rows compiles with the section's backend (tiny: aot_eager, no kernels generated),
    with and without graphs."""
    runtimes = []
    monkeypatch.setattr(
        gpu_speed, "_group", lambda recipe, plan, device, steps, allow, emit: runtimes.append(recipe.runtime)
    )
    recipe = gpu_speed.miniature_recipe(tmp_path, "cpu")
    gpu_speed.compiled_rows(recipe, "cpu", 1, lambda: True, lambda row: None, "aot_eager", graphs=True)
    assert [(r.compile, r.compile_backend, r.graphs) for r in runtimes] == [
        (True, "aot_eager", False),
        (True, "aot_eager", True),
    ]


def test_a_compiled_row_starts_dynamo_from_no_graphs(monkeypatch, tmp_path):
    """The miniature's blocks are SDXL's class: a compiled row resets dynamo first (else SDXL's
    graphs count towards the recompile limit and the row may run eager); an eager row does not."""
    resets = []
    monkeypatch.setattr(torch._dynamo, "reset", lambda: resets.append(1))
    monkeypatch.setattr(gpu_speed, "Trainer", FakeTrainer)
    recipe = gpu_speed.miniature_recipe(tmp_path, "cpu")
    gpu_speed.load(recipe, "cpu")
    assert resets == []
    gpu_speed.load(replace(recipe, runtime=replace(recipe.runtime, compile=True)), "cpu")
    assert resets == [1]


# ---- benchmarks/gpu_options.py ------------------------------------------------------------------


def test_the_options_parts_the_time_limit_refuses_are_skipped(monkeypatch, tmp_path):
    """Past the time limit the checkpointing comparison and the memory plan are recorded skipped
    and not run (each builds SDXL Trainers)."""
    ran = []
    monkeypatch.setattr(gpu_options, "time_phases", lambda *a: None)
    monkeypatch.setattr(gpu_options, "free", lambda device: None)
    monkeypatch.setattr(gpu_options, "checkpointing_runs", lambda *a: ran.append("checkpointing"))
    monkeypatch.setattr(gpu_options, "memory_plans", lambda *a: ran.append("plan"))
    sec: dict = {}
    gpu_options.run_options(sec, Path("m"), Path("c"), tmp_path, "cpu", True, lambda: False, lambda: None)
    assert ran == []
    assert sec["checkpointing"] == sec["memory_plan"] == "skipped (time limit)"


# ---- benchmarks/gpu_report.py (gpu.md) ----------------------------------------------------------


def test_a_miniature_run_the_time_limit_refused_says_so_in_its_row():
    """The fp32 run refused by the time limit: its row says "skipped (time limit)" in full width (it
    showed blank cells, as if it had run and measured nothing)."""
    scores = [{"steps": n, "alignment": 0.5, "fd": 10.0} for n in (1, 2)]
    done = {"precision": "bf16", "train_s": 60.0, "steps_per_s": 3.0, "scores": scores}
    skipped = {"precision": "no", "status": "skipped (time limit)", "scores": []}
    columns, rows = _table(
        {"sections": {"miniature": {"status": "done", "runs": [done, skipped]}}}, "Miniature"
    )
    assert rows[0] == ["bf16", "60.0", "3.00", "0.500 / 10.0", "0.500 / 10.0"]
    assert rows[1][1] == "skipped (time limit)"


def test_the_inference_table_puts_seconds_and_speed_up_in_their_columns():
    rows = [{"model": "teacher", "steps": 25, "cfg": True, "s_per_image": 5.0, "speedup_vs_teacher": 1.0}]
    rows.insert(
        0, {"model": "student", "steps": 4, "cfg": False, "s_per_image": 0.25, "speedup_vs_teacher": 20.0}
    )
    columns, cells = _table({"sections": {"inference": {"status": "done", "rows": rows}}}, "SDXL inference")
    assert dict(zip(columns, cells[0], strict=True)) == {
        "model": "student",
        "steps": 4,
        "CFG": False,
        "s / image": "0.250",
        "x teacher": "20.00",
    }


def test_the_projection_table_gives_hours_at_each_number_of_uses():
    row = {"variant": "eager, trajectory cache", "status": "done", "projected_mlcd_hours": 10.0}
    row |= {"s_per_step": 2.0, "samples_per_s": 4.0, "peak_gib": 60.0, "first_step_s": 9.0}
    row |= {"denoiser_evals_per_step": 8, "host_syncs_per_step": 1}
    row["projected_mlcd_hours_with_cache"] = {15: 12.5, 60: 10.625}
    data = {"sections": {"speed": {"status": "done", "sdxl_mlcd": [row]}}}
    columns, cells = _table(data, "Projected")
    assert cells == [["eager, trajectory cache", "10", "12.5 at 15 uses, 10.6 at 60 uses"]]


def test_the_models_table_lists_every_text_encoder():
    """SDXL's two text encoders (CLIP-L + bigG) and SD3's three (with T5-XXL) each appear."""
    sdxl = {"unet": 2567.46, "text_encoder": 123.06, "text_encoder_2": 694.66, "vae": 83.65}
    sdxl |= {"expected_net": 2567.5, "dtype": "float16", "saved_gb": 6.94, "build_s": 30.0}
    sd3 = {"transformer": 8056.6, "text_encoder": 123.65, "text_encoder_2": 694.66, "text_encoder_3": 4762.3}
    sd3 |= {"vae": 83.82, "expected_net": 8100.0, "dtype": "bfloat16", "saved_gb": 27.0, "build_s": 90.0}
    data = {"sections": {}, "models": {"sdxl": sdxl, "sd3": sd3}}
    columns, rows = _table(data, "Models")
    texts = [dict(zip(columns, r, strict=True))["text encoders"] for r in rows]
    assert texts == ["123.06 + 694.66", "123.65 + 694.66 + 4762.3"]


def test_the_fsdp_table_says_what_was_asked_and_what_happened():
    """FLUX's preset asks for FSDP (True); one process does not shard (False)."""
    sec = {"status": "done", "phases": [], "fsdp_requested": True, "sharded": False}
    sec["embedding_cache"] = {"bytes": 2_500_000, "chunk_files": 1}
    columns, rows = _table({"sections": {"flux": sec}}, "FLUX: FSDP")
    assert dict(zip(columns, rows[0], strict=True)) == {
        "preset's fsdp": True,
        "sharded (1 process)": False,
        "embedding store MB": "2.5",
        "chunk files": 1,
    }


def test_the_checkpointing_table_puts_each_runs_seconds_and_memory_under_it():
    """What checkpointing saves: on uses 30 GiB and 2 s / step, off 50 GiB and 1.5 s."""
    on = {"status": "done", "s_per_step": 2.0, "peak_gib": 30.0, "terms": {"loss": 2.0}}
    off = {"status": "done", "s_per_step": 1.5, "peak_gib": 50.0, "terms": {"loss": 1.0}}
    runs = {"on": on, "off": off}
    columns, rows = _table({"sections": {"options": {"status": "done", "checkpointing": runs}}}, "SDXL DMD")
    found = {r[0]: r[1:3] for r in rows}
    assert found["s / step"] == ["2", "1.5"] and found["peak GiB"] == ["30", "50"]


# ---- benchmarks/gpu_models.py -------------------------------------------------------------------


@pytest.fixture(scope="module")
def meta_nets():
    nets = {}
    for kind in ("sdxl", "sd15", "sd3", "flux"):
        pipe = gpu_models.full_pipeline(kind, "meta")
        nets[kind] = pipe.unet if hasattr(pipe, "unet") else pipe.transformer
    return nets


HEADS = {
    "sdxl": {(10, 64), (20, 64)},
    "sd15": {(8, 40), (8, 80), (8, 160)},
    "sd3": {(38, 64)},
    "flux": {(24, 128)},
}
"""(heads, head dim) of every attention of the released networks: SDXL 64-d heads (10 at 640, 20 at
1280 channels), SD1.5 8 heads at every width, SD3.5-Large 38 of 64, FLUX.1-dev 24 of 128."""


@pytest.mark.parametrize("kind", list(HEADS))
def test_the_full_size_networks_have_the_released_attention_heads(kind, meta_nets):
    """Parameter counts cannot tell the heads apart (the projections are the same size); attention's
    cost and its SDPA kernel (head dim 64 / 128) can: the timings are those of these heads."""
    net = meta_nets[kind]
    attentions = [m for m in net.modules() if hasattr(m, "heads") and hasattr(m, "to_q")]
    assert {(m.heads, m.to_q.out_features // m.heads) for m in attentions} == HEADS[kind]
    if kind == "flux":  # the rotary embedding covers the whole head
        assert sum(net.config.axes_dims_rope) == 128


def test_sdxl_projects_into_its_transformers_with_linear_layers_and_sd15_with_convolutions(meta_nets):
    """SDXL's config has use_linear_projection (SD1.5's does not): same parameter count, other layers."""
    assert isinstance(meta_nets["sdxl"].down_blocks[1].attentions[0].proj_in, torch.nn.Linear)
    assert isinstance(meta_nets["sd15"].down_blocks[0].attentions[0].proj_in, torch.nn.Conv2d)


def test_flux_teacher_features_are_3072_wide(meta_nets):
    """The teacher-feature discriminator's heads read FLUX's image tokens: 24 x 128 = 3072 channels
    at each of the 4 taps (not the 4096 of the text input)."""
    from tlcm.models.families import FAMILIES

    assert FAMILIES["FluxPipeline"].feature_channels(meta_nets["flux"]) == [3072] * 4


def _safetensors_dtypes(folder: Path) -> set[str]:
    dtypes = set()
    for file in folder.glob("*.safetensors"):
        raw = file.read_bytes()
        header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
        dtypes |= {v["dtype"] for k, v in header.items() if k != "__metadata__"}
    return dtypes


def test_a_built_folder_is_saved_in_its_dtype_from_a_clean_folder(tmp_path):
    """SDXL is saved fp16 (the released checkpoint's, half the bytes of fp32); what a failed build
    left in the folder is removed first (its bytes are not counted, its files not loaded)."""
    folder = tmp_path / "sdxl"
    folder.mkdir()
    (folder / "stale.safetensors").write_bytes(b"x" * 100)
    counts = gpu_models.build_folder("sdxl", folder, "cpu", True)
    assert not (folder / "stale.safetensors").exists()
    assert _safetensors_dtypes(folder / "unet") == {"F16"}
    assert json.loads((folder / gpu_models.BUILT).read_text()) == counts


# ---- tlcm/models/families/transformer.py --------------------------------------------------------


def test_flux_shards_and_compiles_its_single_stream_blocks_too(tiny_flux):
    """FLUX.1-dev has 19 joint and 38 single-stream blocks: FSDP and compilation take both."""
    from tlcm.models.families import FAMILIES

    net, family = tiny_flux.transformer, FAMILIES["FluxPipeline"]
    expected = [*net.transformer_blocks, *net.single_transformer_blocks]
    assert len(net.single_transformer_blocks) > 0
    assert family.shard_modules(net) == expected and family.compile_modules(net) == expected


def test_the_lora_covers_both_streams_attention_and_mlps_of_a_joint_block(tiny_flux):
    """Every linear layer of a joint block but the norms' modulation carries the LoRA: the image and
    the text stream's q / k / v / out projections and both MLPs (diffusers' DreamBooth targets)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    from tlcm.config import StudentConfig
    from tlcm.diffusion.schedule import schedule_from_config
    from tlcm.models.base import BaseModel
    from tlcm.models.families import FAMILIES
    from tlcm.models.student import Student

    family = FAMILIES["FluxPipeline"]
    base = BaseModel(
        tiny_flux,
        schedule_from_config(tiny_flux.scheduler.config),
        None,
        family,
        family.latent_shape(tiny_flux),
    )
    Student(base, StudentConfig(lora_rank=2, lora_alpha=2.0))
    block = base.net.transformer_blocks[0]
    names = {
        n.rsplit(".base_layer", 1)[0] for n, m in block.named_modules() if isinstance(m, torch.nn.Linear)
    }
    names = {n for n in names if "norm" not in n and "lora_" not in n}
    wrapped = {n for n, m in block.named_modules() if isinstance(m, BaseTunerLayer)}
    assert "attn.to_add_out" in names and names == wrapped


# ---- tlcm/models/graphs.py ----------------------------------------------------------------------


def _calls(fn):
    net = torch.nn.Linear(1, 1)  # no LoRA layer: the key's adapter selection is ()
    graphs = CallGraphs(torch.device("cpu"))
    return graphs, lambda x, t, cond: graphs(net, fn, x, t, cond)


def test_another_input_dtype_is_another_capture():
    """A capture's static inputs have the first call's dtype: a float64 call must not be copied
    into float32 buffers and replayed (its output would be float32, rounded)."""
    graphs, call = _calls(lambda x, t, cond: x * 2 + cond.prompt_embeds.sum())
    cond = Conditioning(prompt_embeds=torch.ones(2, 3, 4))
    t = torch.zeros(2)
    x = torch.full((2, 3), 1 / 3)
    assert call(x, t, cond).dtype == torch.float32
    out = call(x.double(), t, cond)
    assert graphs.captures == 2 and out.dtype == torch.float64
    assert torch.equal(out, x.double() * 2 + 24)


def test_which_conditioning_fields_are_present_is_part_of_the_key():
    """Two calls whose tensors have the same shapes but name other fields (pooled embeddings vs
    time ids, both (2, 6)) are two captures: the second is not replayed as the first."""

    def fn(x, t, cond):
        return x + (cond.pooled_embeds.sum() if cond.pooled_embeds is not None else 10 * cond.time_ids.sum())

    graphs, call = _calls(fn)
    x, t, embeds, six = torch.zeros(2, 3), torch.zeros(2), torch.ones(2, 3, 4), torch.ones(2, 6)
    assert torch.equal(call(x, t, Conditioning(prompt_embeds=embeds, pooled_embeds=six)), x + 12)
    assert torch.equal(call(x, t, Conditioning(prompt_embeds=embeds, time_ids=six)), x + 120)
    assert graphs.captures == 2


def test_cleared_captures_are_made_again_with_the_weights_that_replaced_the_old():
    """A capture holds the weight tensors it was made with (a CUDA graph: their addresses): after a
    weight is replaced by a new tensor, ``clear`` makes the next call capture again, with it."""
    net = torch.nn.Linear(1, 1, bias=False)
    graphs = CallGraphs(torch.device("cpu"))
    call = lambda x, t, cond: graphs(net, lambda x, t, cond: x * net.weight, x, t, cond)  # noqa: E731
    x, t, cond = torch.ones(2, 3), torch.zeros(2), Conditioning(prompt_embeds=torch.ones(2, 3, 4))
    with torch.no_grad():
        net.weight.fill_(2.0)
        assert torch.equal(call(x, t, cond), x * 2)
        net.weight = torch.nn.Parameter(torch.full((1, 1), 3.0))  # replaced, not updated in place
        graphs.clear()
        assert torch.equal(call(x, t, cond), x * 3)
    assert (graphs.captures, graphs.replays) == (2, 2)


def test_a_cuda_capture_waits_for_the_inputs_warms_up_then_captures(monkeypatch):
    """The CUDA branch with torch.cuda faked: the side stream first waits for the current one (the
    static inputs were copied there), runs the one warm-up call (lazy cuBLAS set-ups cannot happen
    inside a capture), the current stream waits for it, then the capture (its call) and a replay."""
    events = []

    class Stream:
        def __init__(self, name="side") -> None:
            self.name = name

        def wait_stream(self, other) -> None:
            events.append(f"{self.name} waits for {other.name}")

    current = Stream("current")

    class CUDAGraph:
        def replay(self) -> None:
            events.append("replay")

    @contextlib.contextmanager
    def graph(g, pool=None, stream=None, capture_error_mode="global"):
        events.append(f"capture ({capture_error_mode})")
        yield

    cuda = torch.cuda
    monkeypatch.setattr(cuda, "graph_pool_handle", lambda: (0, 1))
    monkeypatch.setattr(cuda, "current_stream", lambda device=None: current)
    monkeypatch.setattr(cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(cuda, "Stream", lambda device=None: Stream())
    monkeypatch.setattr(cuda, "CUDAGraph", CUDAGraph)
    monkeypatch.setattr(cuda, "graph", graph)

    def fn(x, t, cond):
        events.append("call")
        return x + 1

    graphs = CallGraphs(torch.device("cuda"))
    x, t, cond = torch.zeros(2, 3), torch.zeros(2), Conditioning(prompt_embeds=torch.ones(2, 3, 4))
    assert torch.equal(graphs(torch.nn.Linear(1, 1), fn, x, t, cond), x + 1)
    assert events == [
        "side waits for current",
        "call",
        "current waits for side",
        "capture (thread_local)",
        "call",
        "replay",
    ]
