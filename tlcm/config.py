"""The recipe tree: model, student, data, named phases (each with its losses), runtime.

Plain typed dataclasses; every field's docstring is what ``python -m tlcm.train recipes:NAME
--help`` prints. Recipes (recipes/) are functions returning a ``Recipe``; variants copy a base
and change fields with ``dataclasses.replace``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Literal

from tlcm.checkpoint import WEIGHT_LIMIT
from tlcm.diffusion.milestones import StudentGrid
from tlcm.losses.base import LossConfig
from tlcm.toy import MINIATURE_PROMPTS, MINIATURE_SD, TEACHER_GUIDANCE_SCALE, is_miniature

EXPORT_FORMATS = ("diffusers", "kohya", "pipeline")
"""Student export formats (tlcm/export.py): diffusers / peft LoRA, kohya (ComfyUI / A1111) LoRA, the
whole pipeline with the student merged."""

FrozenDtype = Literal["auto", "fp32", "bf16", "fp16"]
"""A frozen-weights dtype flag: "auto" (see ``tlcm.models.base.frozen_dtype``) or a key of
``tlcm.models.base.FROZEN_DTYPES``."""


@dataclass
class ModelConfig:
    """The frozen base model (the teacher)."""

    path: Path = MINIATURE_SD
    """Local diffusers folder (SD1.5 / SDXL / SD3 / FLUX.1 pipeline; its class picks the model family).
    Default: the bundled miniature pipeline."""
    guidance_scale: float = TEACHER_GUIDANCE_SCALE
    """Teacher's classifier-free guidance scale w (the paper uses 8 on SDXL)."""
    frozen_dtype: FrozenDtype = "auto"
    """dtype of the frozen weights (UNet base, text encoders, VAE; a force_upcast VAE stays fp32):
    "auto" = bf16 on CUDA with bf16 autocast, else fp32. Adapters, a full fine-tune's copy and the
    optimizer state are fp32 whatever this says."""
    resolution: int | None = None
    """Pixel height = width of the training samples (None: the pipeline's default, e.g. 1024 on
    SDXL / FLUX)."""
    max_sequence_length: int | None = None
    """T5 tokens of the prompt encoding for SD3 / FLUX (None: the pipeline's default, 256 / 512);
    sample the student with the same value."""
    pipeline: str | None = None
    """The diffusers pipeline class (model_index.json's _class_name) the recipe's values were written
    for: a folder of another is refused before loading (None: any; the large presets set theirs)."""


@dataclass
class StudentConfig:
    """What is trained."""

    lora_rank: int = 16
    """LoRA rank r (the paper: 64 on SDXL). Ignored when full_finetune."""
    lora_alpha: float = 16.0
    """LoRA alpha (scale alpha / r)."""
    target_modules: tuple[str, ...] = ()
    """Module names of the denoising network that receive LoRA adapters (peft's suffix match);
    empty: the family's default (SD / SDXL: LCM-LoRA's; SD3 / FLUX: attention + MLP projections)."""
    full_finetune: bool = False
    """Train a full copy of the denoising network instead of LoRA adapters (two copies in memory)."""
    init_from: Path | None = None
    """Start from a tlcm run folder's latest checkpoint (e.g. the stage-1 run for recipes:lcd); its
    LoRA rank, alpha and targets must match this config."""
    init_from_unfinished: bool = False
    """Allow init_from a checkpoint that stopped mid-phase (pre-empted or periodic); refused by
    default, since its phase did not finish."""
    grid: StudentGrid = field(default_factory=StudentGrid)
    """The student's sampling grid (M milestones, q training steps): the one owner of it, read by
    every loss, the sample grids, evaluation and the exported TLCMScheduler."""


@dataclass
class DataConfig:
    """Training data: prompts (data-free, the paper), plus an optional teacher trajectory cache, or
    real image-text pairs for losses that train on real images (LCM, PCM, TCD)."""

    prompts: Path | None = None
    """Prompt file: .txt (one per line) or .jsonl (a "prompt" field). None: the miniature prompts."""
    trajectory_cache: Path | None = None
    """Folder of precomputed teacher trajectories (python -m tlcm.data.trajectories); needed by
    losses whose state source is "cache"."""
    embedding_cache: Path | None = None
    """Folder of cached text embeddings (tlcm/data/embeddings.py; created and filled on demand, reused
    across runs and prompt files of the same text encoder). None: encode on demand, keep on the device
    only a few chunks of 64 prompts (fine for small prompt sets; pass a folder for large ones)."""
    images: Path | None = None
    """Real image-text pairs: a folder with metadata.jsonl (file_name, text: diffusers' and the
    datasets library's image folder), a folder of images each with its caption file beside it
    (NAME.png + NAME.txt, .text or .caption: kohya's and OneTrainer's layout; subfolders read, in
    sorted path order, no repeat counts) or webdataset .tar shards (a folder of them, one .tar, a glob
    or a {a..b} range). Their captions are the prompts (leave data.prompts unset) and their images
    the real samples of losses that use them (MLCD states "data"), read at the model's resolution.
    The miniature's digits: python -m tlcm.data.images --write-miniature DIR."""
    caption_column: str = "text"
    """The metadata.jsonl field holding the caption (diffusers' --caption_column; the other layouts
    have no columns)."""
    embedding_dtype: Literal["encoder", "float16", "bfloat16"] = "encoder"
    """Storage dtype of the embedding cache: the text encoder's output dtype (exact), or half the
    bytes (every embedding, cached or fresh, then rounded to it)."""

    def on_miniature_prompts(self, model: Path) -> bool:
        """Whether a run of ``model`` with this data would train on the miniatures' 40 prompts
        (neither prompts nor images set) though ``model`` is not a bundled miniature: the recipe
        check refuses it, stand-ins (``smoke_recipe``) get those prompts as a file."""
        return self.prompts is None and self.images is None and not is_miniature(model)


@dataclass
class Phase:
    """One training phase: its own optimizer, steps, batch and loss terms."""

    steps: int = 100
    """Optimizer steps of this phase."""
    lr: float = 1e-4
    """AdamW learning rate (the peak of ``lr_schedule``)."""
    lr_schedule: Literal["constant", "constant_with_warmup", "linear", "cosine"] = "constant"
    """Learning-rate schedule over the phase's steps (diffusers.optimization.get_scheduler):
    "cosine" / "linear" warm up for ``lr_warmup_steps`` then decay to 0 at the phase's last step."""
    lr_warmup_steps: int = 0
    """Linear warm-up steps from 0 to ``lr`` (every schedule but "constant")."""
    batch_size: int = 16
    """Prompts per optimizer step (global, over all processes and accumulation micro-steps)."""
    losses: dict[str, LossConfig] = field(default_factory=dict)
    """Loss terms by name; each has a weight and its own hyper-parameters."""
    grad_accum: int = 1
    """Gradient accumulation micro-steps per optimizer step (the micro-batch is batch_size / (processes
    x grad_accum)). With the memory plan on (runtime.memory_plan), 1 lets the plan choose it; any
    other value is kept (the plan only checks that it fits)."""
    max_grad_norm: float = 1.0
    """Gradient clipping (0 disables)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""


@dataclass
class RuntimeConfig:
    """Where and how the run executes."""

    out_dir: Path = Path("runs/default")
    """Run folder: metrics.jsonl, checkpoints/, samples, the exported student."""
    seed: int = 0
    """Seed; micro-batch j of global step s draws from a generator seeded with (seed, s, j), and the
    prompt order from (seed, s): resume is exact, and results depend on each phase's micro-batch
    split (processes x grad_accum), not on the process count alone: N processes x grad_accum k equal
    1 process x grad_accum N k (bit for bit with k = 1; with accumulation on each process too, to
    float rounding: the gradients are summed in another order). Another process count with the same
    grad_accum changes the micro-batches, hence the results."""
    device: str = "auto"
    """"auto" (cuda if available, else cpu), or a torch device string."""
    mixed_precision: Literal["auto", "no", "bf16"] = "auto"
    """Autocast dtype: "auto" = bf16 on GPU, fp32 on CPU."""
    gradient_checkpointing: bool = False
    """Recompute the denoising network's block activations in backward (each block under the adapter
    it ran with): about a third more compute for a fraction of the activation memory (SDXL at 1024
    px: <= 1 GiB per sample instead of >= 7.6 for MLCD, docs/design.md). On: kept by the memory plan;
    off: the memory plan decides (without a plan: off)."""
    compile: bool = False
    """``torch.compile`` the denoising network's repeated blocks (regional compilation: SDXL's
    transformer blocks, SD3's / FLUX's blocks; ``Student.compile``). The first steps pay the
    compilation (each adapter selection, grad mode and shape once); gradients equal the eager ones
    to rounding (tests/test_loss_contract.py). On the CPU it only costs: for GPUs."""
    compile_backend: str = "inductor"
    """The ``torch.compile`` backend of ``compile``: "inductor" (kernels generated for the device:
    the fast one), "aot_eager" (forward and backward traced by dynamo and AOTAutograd, then run by
    eager kernels: checks that compilation keeps the gradients without inductor's compile time, for
    debugging and the CPU tests), or any other name ``torch._dynamo.list_backends()`` gives."""
    graphs: bool = False
    """Capture each no-grad call of the denoising network (teacher, targets, sampling) once per
    input shape and replay it: CUDA graphs on CUDA, an aten-op trace on the CPU (tlcm/models/graphs.py).
    For small networks whose steps are bound by launching kernels (the miniature); results equal
    eager ones (CPU: bit for bit, tests/test_loss_contract.py). Each captured shape keeps its
    activations' memory; refused with FSDP2 (its weights move at every call)."""
    fsdp: bool = False
    """Under torchrun, shard the denoising network (frozen base and adapters; a full fine-tune's copy
    and the teacher) over the processes with FSDP2 (``fully_shard``), for bases that do not fit one
    device (FLUX: 12 B parameters). Phase-end sample grids and the end-of-run evaluation are skipped
    (sample / evaluate the export afterwards); EMA targets and DPO references are refused. One
    process: ignored."""
    memory_plan: bool = False
    """Per phase, measure whole micro-batch steps (forward, backward and the losses' own updates:
    DMD's fake score, the discriminator, with their optimizers' state) at micro-batches 1 and 2,
    and pick the largest micro-batch (grad_accum) and whether to checkpoint whose predicted peak,
    plus the student's AdamW moments, stays under 90% of the budget (tlcm/memory_plan.py; CUDA
    only, ignored on the CPU). A phase's grad_accum other than 1 and gradient_checkpointing on are
    kept. Changes the random draws (another micro-batch split). On in the SDXL / SD3 / FLUX
    presets: with it their paper batches (32 / 32 / 8 / 4) fit one 80 GB GPU (the arithmetic from
    H200 measurements in docs/design.md, "Memory arithmetic per phase"); turned off there, the
    fixed values that fit (the micro-batches measured on an H200) are
    --recipes.runtime.gradient-checkpointing with grad-accum 4 for mlcd, lcd and preference and 2
    for dmd_gan."""
    memory_budget_gib: float | None = None
    """The memory plan's budget in GiB (turns the plan on; None: the whole device). Binding: this
    process's CUDA allocator is capped at the budget less what is already used outside it (the
    CUDA context), for the measurements and for training, so a step that needs more fails with
    out-of-memory instead of silently using a bigger card; the plan keeps its predicted peak
    (allocated and reserved, i.e. with fragmentation) under 90% of that cap (the rest covers what a
    measured step does not hold). 80 on a 141 GB H200
    picks a plan for an 80 GB A100 / H100 (which torch sees as 79.1-79.2 GiB: pass 79 to make the
    cap itself exact for them)."""
    checkpoint_every: int = 0
    """Save a checkpoint every N optimizer steps (0: only at phase ends and on a stop signal:
    SIGTERM, SIGINT / Ctrl-C, SIGHUP)."""
    resume: bool = True
    """Continue from out_dir/checkpoints/latest when it exists (falling back to the newest loadable
    checkpoint if that one is damaged). A recipe, base model or micro-batch split (processes x
    grad-accum) that differs from the checkpoint's in anything that alters training is refused,
    naming the fields (tlcm/resume.py lists those that may change: logging, checkpoint cadence,
    exports, failure handling, device).
    False: start over, removing out_dir/checkpoints and the earlier run's student/, sample grids and
    eval*.json there."""
    resume_changed: bool = False
    """Resume even though the recipe, base model or process count changed (on purpose: e.g. a lower
    lr after a blow-up); the new values apply from the resumed step on. The phases must stay the
    same, in the same order, and those trained so far (wholly or partly) keep their steps; a phase
    not started yet may have other steps (e.g. more DMD steps between requeues). Another
    process count whose grad_accum keeps every phase's micro-batch split (processes x grad_accum,
    e.g. 2 x 1 -> 1 x 2) needs no flag: the resume is exact."""
    log_every: int = 1
    """Write metrics.jsonl (and the progress bar's values) every N steps, at phase ends and at
    skipped steps."""
    trackers: tuple[Literal["tensorboard", "wandb"], ...] = ()
    """Experiment trackers that get metrics.jsonl's numbers at the same steps, and the recipe as
    config (rank 0): tensorboard (RUN/tensorboard) and/or wandb (offline run in RUN/wandb; upload
    later with wandb sync). Each needs its extra: pip install -e '.[tensorboard]' or '.[wandb]'."""
    on_nonfinite: Literal["stop", "skip"] = "stop"
    """A NaN/inf loss term or gradient: "stop" the run (exit 3) or "skip" the step (no update);
    both name the term. Nothing non-finite is ever saved."""
    max_consecutive_skips: int = 10
    """With on_nonfinite "skip": skipped steps allowed in a row; one more stops the run (exit 3)."""
    max_skipped_fraction: float = 0.25
    """With on_nonfinite "skip": a phase that ends with more than this fraction of its steps skipped
    fails (exit 3, its end not saved, nothing exported): skip could not train it."""
    max_weight_abs: float = WEIGHT_LIMIT
    """Divergence guard, whatever on_nonfinite says: a trainable student weight larger than this in
    magnitude (finite: a blow-up) stops the run (exit 3; checked on the weights entering each step,
    at the step's one host sync, and at every save, which refuses such a checkpoint like a NaN one;
    a resume passes over such a checkpoint to the previous one). Trained weights stay orders of
    magnitude below it (miniature LoRAs < 1, the miniature UNets' own weights < 1.5); inf
    disables it."""
    sample_grid: bool = True
    """Write a sample grid PNG at the end of each phase."""
    eval_samples_per_digit: int = 0
    """At the end, score the student with the toy metrics (miniature pipeline only; 0: off)."""
    export_formats: tuple[str, ...] = ("diffusers",)
    """Formats of the exported student in RUN/student: diffusers (pytorch_lora_weights.safetensors),
    kohya (RUN_NAME_kohya.safetensors for ComfyUI / A1111; LoRA students only) and / or pipeline
    (pipeline/: the base pipeline with the student merged and the TLCM scheduler, a copy of the
    base's other components; not with fsdp: export it afterwards, python -m tlcm.export RUN
    --format pipeline)."""


@dataclass
class Recipe:
    """A whole distillation: phases run in order on one student."""

    model: ModelConfig = field(default_factory=ModelConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    phases: dict[str, Phase] = field(default_factory=dict)
    """Training phases by name, run in insertion order."""
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    inference_steps: tuple[int, ...] = ()
    """Step counts shown in sample grids and evaluated at the end (each in 1..M; empty: those of 1,
    2, 4, 8 that the student's grid has, <= M)."""

    @property
    def shown_steps(self) -> tuple[int, ...]:
        """``inference_steps``, or when empty the student grid's default (1, 2, 4, 8 <= M)."""
        return self.inference_steps or self.student.grid.shown_steps


def smoke_recipe(
    recipe: Recipe,
    model: Path,
    out_dir: Path,
    steps: int = 2,
    batch_size: int = 2,
    device: str = "cpu",
    resume: bool = True,
    **student: object,
) -> Recipe:
    """The same phases and loss hyper-parameters at ``steps`` x ``batch_size``, on ``model``,
    writing only ``out_dir`` (no sample grid, evaluation or periodic checkpoints); ``student``
    overrides StudentConfig fields (init_from is cleared); without prompts or images, on a ``model``
    other than the bundled miniatures, the miniature's prompts as a file (a stand-in trains on
    them). For smoke tests, benchmarks and ablation dry runs."""
    phases = {name: replace(p, steps=steps, batch_size=batch_size) for name, p in recipe.phases.items()}
    data = recipe.data
    if data.on_miniature_prompts(model):
        data = replace(data, prompts=MINIATURE_PROMPTS)
    return replace(
        recipe,
        data=data,
        model=replace(recipe.model, path=model, pipeline=None),  # smoke tests run presets on every family
        student=replace(recipe.student, init_from=None, **student),
        phases=phases,
        runtime=replace(
            recipe.runtime,
            out_dir=out_dir,
            sample_grid=False,
            eval_samples_per_digit=0,
            checkpoint_every=0,
            resume=resume,
            device=device,
        ),
        inference_steps=(1, 2),
    )


def recipe_dict(recipe: Recipe) -> dict:
    """The recipe as plain JSON values: dataclasses as dicts (each loss config with its "class"
    name), Paths as strings, tuples as lists."""

    def plain(value):
        if is_dataclass(value) and not isinstance(value, type):
            tag = {"class": type(value).__name__} if isinstance(value, LossConfig) else {}
            return {**tag, **{f.name: plain(getattr(value, f.name)) for f in fields(value)}}
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value if value is None or isinstance(value, bool | int | float | str) else str(value)

    return plain(recipe)
