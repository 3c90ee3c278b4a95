"""The model card: README.md beside an exported student, in the Hugging Face model-card style.

YAML front matter (base_model, library_name, pipeline_tag, tags), then: what was distilled from
which base (path: relative to the repository for the bundled miniatures, else as given; pipeline
class), training time, the student's scores (RUN/eval.json, labelled as tlcm/summary.py labels
them: prompt count, the teacher's at the same prompts, what the metrics mean), the files this
export wrote, how to load it in diffusers and in ComfyUI (or why ComfyUI cannot load its base),
the sampler settings (TLCMScheduler config, grid M and q, gamma),
a table of the exact timesteps (and ComfyUI sigmas) for 1/2/4/8 steps, and the full resolved
recipe as JSON (``tlcm.config.recipe_dict``). The engine writes it with every export;
``python -m tlcm.train`` rewrites it with the scores after the end-of-run evaluation.
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from tlcm.checks import has_lora_loader
from tlcm.config import Recipe, recipe_dict
from tlcm.diffusion.milestones import StudentGrid
from tlcm.files import write_failed
from tlcm.summary import repo_path, scores_text

if TYPE_CHECKING:  # diffusers loads with the first card: `python -m tlcm.export --help` is quick
    from tlcm.diffusion.scheduler import TLCMScheduler
    from tlcm.models.student import Student

CARD_FILE = "README.md"
DIFFUSERS_FILE = "pytorch_lora_weights.safetensors"
"""diffusers' default LoRA file name (``load_lora_weights(folder)`` finds it)."""
CARD_STEPS = (1, 2, 4, 8)
"""Step counts of the card's timestep table (those <= M)."""


def kohya_file(name: str) -> str:
    """The kohya-format file name of run ``name`` (what ComfyUI lists in its LoRA menu)."""
    return f"{name}_kohya.safetensors"


def comfy_sigmas(scheduler: TLCMScheduler, timesteps: list[int]) -> list[float]:
    """k-diffusion / ComfyUI sigmas sqrt((1 - abar_t) / abar_t) of VP ``timesteps``, then 0."""
    abar = scheduler.alphas_cumprod.double()
    return [math.sqrt((1 - abar[t].item()) / abar[t].item()) for t in timesteps] + [0.0]


def sgm_uniform_timesteps(steps: int, num_train_timesteps: int) -> list[float]:
    """Where ComfyUI's "sgm_uniform" scheduler steps: linspace(T - 1, 0, n + 1) without the last."""
    ts = torch.linspace(num_train_timesteps - 1, 0, steps + 1, device="cpu")[:-1]
    return [round(t, 2) for t in ts.tolist()]


def _table(rows: list[dict]) -> str:
    keys = list(rows[0])
    cell = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    return "\n".join(lines + ["| " + " | ".join(cell(r[k]) for k in keys) + " |" for r in rows])


def flow_timestep_rows(scheduler, num_milestones: int, mu: float | None) -> list[dict]:
    """The card's table for a TLCMFlowScheduler: per step count n, its timesteps and sigmas (``mu``:
    the resolution-dependent shift of a dynamic-shifting scheduler at the training resolution)."""
    rows = []
    for n in [s for s in CARD_STEPS if s <= num_milestones]:
        scheduler.set_timesteps(n, mu=mu)
        sigmas = ", ".join(f"{s:.4g}" for s in scheduler.sigmas.tolist())
        rows.append(
            {
                "steps": n,
                "timesteps": ", ".join(f"{t:.4g}" for t in scheduler.timesteps.tolist()),
                "sigmas": sigmas,
            }
        )
    return rows


def timestep_rows(scheduler: TLCMScheduler, num_milestones: int) -> list[dict]:
    """The card's table: per step count n in CARD_STEPS (n <= M), the TLCM timesteps, their ComfyUI
    sigmas and where ComfyUI's sgm_uniform steps instead."""
    rows = []
    for n in [s for s in CARD_STEPS if s <= num_milestones]:
        scheduler.set_timesteps(n)
        ts = scheduler.timesteps.tolist()
        uniform = sgm_uniform_timesteps(n, scheduler.config.num_train_timesteps)
        rows.append(
            {
                "steps": n,
                "timesteps": ", ".join(map(str, ts)),
                "ComfyUI sigmas": ", ".join(f"{s:.6g}" for s in comfy_sigmas(scheduler, ts)),
                "sgm_uniform": ", ".join(f"{t:g}" for t in uniform),
            }
        )
    return rows


def _front_matter(base_path: str, lora: bool, tag: str) -> str:
    tags = ["text-to-image", "diffusers", "lora" if lora else "full-finetune", "tlcm", "latent-consistency"]
    tags.append(tag)
    lines = [
        f"base_model: {json.dumps(base_path)}",
        f"base_model_relation: {'adapter' if lora else 'finetune'}",
        "library_name: diffusers",
        "pipeline_tag: text-to-image",
        "tags:",
        *[f"- {t}" for t in tags],
        "inference: false",
    ]
    return "---\n" + "\n".join(lines) + "\n---\n"


def _diffusers_use(student: Student, base_path: str, out: str, steps: int) -> str:
    from tlcm.models.families.base import absent_components

    base, lora = student.base, not student.config.full_finetune
    pipeline, net, scheduler = base.family.pipeline_name, base.family.net, base.family.scheduler
    if lora and not has_lora_loader(pipeline):
        return (
            f"{pipeline} has no `load_lora_weights` in this diffusers: export the student merged "
            "(`python -m tlcm.export RUN --format pipeline`), then `import tlcm` and "
            '`DiffusionPipeline.from_pretrained("RUN/student/pipeline")`.'
        )
    if lora:
        imports, load = pipeline, f'pipe.load_lora_weights("{out}")\npipe.fuse_lora()'
    else:
        net_class = type(student.net).__name__
        imports = f"{pipeline}, {net_class}"
        load = f'pipe.{net} = {net_class}.from_pretrained("{out}/{net}")'
    kwargs = {"num_inference_steps": steps, **base.family.sample_kwargs()}
    if base.max_sequence_length is not None:
        kwargs["max_sequence_length"] = base.max_sequence_length
    call = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    absent = "".join(f", {name}=None" for name in absent_components(Path(base.path)))  # SD3 without T5
    return f"""```python
from diffusers import {imports}
from tlcm.diffusion import {scheduler}

pipe = {pipeline}.from_pretrained("{base_path}"{absent})
{load}
pipe.scheduler = {scheduler}.from_pretrained("{out}/scheduler")
image = pipe("your prompt", {call}).images[0]
```"""


def _comfy_use(kohya: str, pipeline: str, base_path: str, lora: bool, grid: StudentGrid) -> str:
    """ComfyUI steps; ``grid``: the export's sampler (ComfyUI's lcm is gamma 1 at every move)."""
    if not lora:
        return "A full fine-tune exports a diffusers UNet folder: convert it to a checkpoint for ComfyUI."
    lcm = grid.gamma == 1 and grid.first_gamma in (None, 1)
    differs = (
        ""
        if lcm
        else f"\n   This student ships another sampler ({grid.describe_sampler()}), which ComfyUI's samplers"
        "\n   do not offer: lcm gives the paper's sampler (gamma 1 at every move); diffusers, the exact one."
    )
    return f"""1. Copy `{kohya}` to `ComfyUI/models/loras/` (if this folder lacks it:
   `python -m tlcm.export RUN --format kohya`, RUN being the run folder above this one).
2. Load the base model ({pipeline} `{base_path}`, as a single-file checkpoint) and a
   **LoraLoader** node with the file: strength_model 1.0, strength_clip 0 (the LoRA has no
   text-encoder weights).
3. Sample without guidance: cfg 1.0, sampler **lcm** (it predicts x0 and re-noises to the next
   sigma: TLCM with gamma = 1). ComfyUI has no TLCM scheduler: for the exact steps, give the
   "ComfyUI sigmas" below to a **SamplerCustom** node (sampler: KSamplerSelect "lcm") through a
   custom-sigmas node such as ManualSigmas; the scheduler **sgm_uniform** approximates them, at
   the timesteps of the "sgm_uniform" column (close to TLCM's where the two columns agree).{differs}"""


PIPELINE_FILES = (
    ", `pipeline/` (the whole pipeline, the student merged, the TLCM scheduler: "
    "`import tlcm` (the scheduler's library: diffusers refuses to load it otherwise), then "
    '`DiffusionPipeline.from_pretrained("pipeline")`, no LoRA to load)'
)
"""The card's "Files:" entry of an exported pipeline/."""


def list_pipeline(card: str) -> str:
    """``card`` (a model card's text) with `pipeline/` in its "Files:" line, before `scheduler/`
    (``python -m tlcm.export --format pipeline`` after training keeps the training card, with its
    recipe); unchanged when it lists pipeline/ already or has no such line (edited by hand)."""
    lines = card.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("Files: ") and ", `scheduler/` (" in line and "`pipeline/`" not in line:
            lines[i] = line.replace(", `scheduler/` (", PIPELINE_FILES + ", `scheduler/` (", 1)
    return "\n".join(lines)


def render_model_card(
    student: Student,
    out_dir: Path,
    name: str,
    recipe: Recipe | None = None,
    train_seconds: float | None = None,
    scores: list[dict] | None = None,
) -> str:
    """The card's Markdown for ``student`` exported to ``out_dir`` (kohya file named after ``name``)."""
    import tlcm.diffusion.scheduler
    from tlcm.diffusion.scheduler import TLCMScheduler

    base, config, lora = student.base, student.config, not student.config.full_finetune
    pipeline, base_path, family = base.family.pipeline_name, repo_path(base.path), base.family
    in_repo = ", a folder of the tlcm repository," if base_path != str(base.path) else ""
    scheduler = getattr(tlcm.diffusion.scheduler, family.scheduler).from_pretrained(out_dir / "scheduler")
    m, q = config.grid.num_milestones, config.grid.steps
    if lora:
        scale = config.lora_alpha / config.lora_rank
        what = f"LoRA rank {config.lora_rank}, alpha {config.lora_alpha:g} (scale alpha / rank = {scale:g})"
        what += f" on {', '.join(config.target_modules)}"
        files = f"`{DIFFUSERS_FILE}` (diffusers)"
        kohya = (out_dir / kohya_file(name)).is_file()  # written with --recipes.runtime.export-formats kohya
        files += f", `{kohya_file(name)}` (kohya: ComfyUI, A1111)" if kohya else ""
    else:
        what, files = f"full fine-tune of the {type(student.net).__name__}", f"`{family.net}/`"
    if (out_dir / "pipeline" / "model_index.json").is_file():  # --recipes.runtime.export-formats pipeline
        files += PIPELINE_FILES
    refusal = family.comfy_refusal(base.net)  # None: stock ComfyUI loads the base with the kohya LoRA
    comfy = (
        _comfy_use(kohya_file(name), pipeline, base_path, lora, config.grid) if refusal is None else refusal
    )
    if isinstance(scheduler, TLCMScheduler):
        rows = timestep_rows(scheduler, m)
    else:
        rows = flow_timestep_rows(scheduler, m, family.scheduler_mu(base.pipe, base.schedule))
    guidance = family.sample_kwargs()["guidance_scale"]
    first = scheduler.config.get("first_gamma")
    first_move = "" if first is None else f" ({first:g} for the first move, from pure noise)"
    prediction = scheduler.config.get("prediction_type", "flow (velocity)")
    seconds = (
        "not recorded"
        if train_seconds is None
        else f"{train_seconds:.1f} s wall clock (the phases, every session of a resumed run)"
    )
    scored = (
        scores_text(scores, base.path, out_dir.parent)
        if scores
        else "Not evaluated (`--recipes.runtime.eval-samples-per-digit`)."
    )
    own = inspect.signature(type(scheduler).__init__).parameters  # not the base scheduler's extra keys
    settings = json.dumps({k: v for k, v in scheduler.config.items() if k in own}, indent=2, default=str)
    recipe_part = (
        "```json\n" + json.dumps(recipe_dict(recipe), indent=2) + "\n```"
        if recipe is not None
        else "Not recorded (exported from a checkpoint by `python -m tlcm.export`)."
    )
    return f"""{_front_matter(base_path, lora, family.tag)}
# TLCM student of {Path(base_path).name}

A few-step student distilled with [tlcm](https://arxiv.org/abs/2406.05768) (Training-efficient
Latent Consistency Model) from `{base_path}`{in_repo} (`{pipeline}`): it samples in 1-{m} steps without
classifier-free guidance.

- Student: {what}
- Student grid: M = {m} milestones, q = {q} training steps
- Training time: {seconds}

## Scores

{scored}

## Use in diffusers

{_diffusers_use(student, base_path, str(out_dir), min(4, m))}

Files: {files}, `scheduler/` (the {type(scheduler).__name__} config), this card.

## Use in ComfyUI

{comfy}

## Sampler settings

Steps: 1..{m} at the milestone timesteps below (training sampled {q} steps), guidance scale
{guidance:g} (no classifier-free guidance{"; ComfyUI cfg 1.0" if family.kohya else ""}), gamma
{scheduler.config.gamma:g}{first_move} (1: fresh noise between steps, as LCM; 0: deterministic, as
DDIM), prediction type {prediction}.

{_table(rows)}

{type(scheduler).__name__} parameters (`scheduler/scheduler_config.json`):

```json
{settings}
```

## Recipe

{recipe_part}
"""


def write_model_card(
    student: Student,
    out_dir: Path,
    name: str,
    recipe: Recipe | None = None,
    train_seconds: float | None = None,
    scores: list[dict] | None = None,
) -> Path:
    """Write ``out_dir/README.md`` (after ``export_student`` wrote ``out_dir``); returns its path.
    A failed write (a full disk) is one TLCMError line."""
    path = Path(out_dir) / CARD_FILE
    text = render_model_card(student, Path(out_dir), name, recipe, train_seconds, scores)
    try:
        path.write_text(text)
    except OSError as err:
        raise write_failed(f"the model card to {path}", err) from err
    return path
