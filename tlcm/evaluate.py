"""Evaluation: ``python -m tlcm.evaluate teacher-table | student | compare | generate | score |
reward-thresholds``;
``--import MODULE`` (any subcommand) imports a module of yours first, e.g. one that registers a
model family (tlcm/user_modules.py).

``reward-thresholds`` shows where a reward's hinge thresholds (s0, s_neg) sit on a teacher's
samples (tlcm/eval/reward_thresholds.py).

``generate`` and ``score`` evaluate real SD1.5 / SDXL teachers and students offline as the papers
do (tlcm/eval/, docs/evaluation.md); the other three are the miniature pipeline's toy evaluation.

The teacher table scores DDIM + CFG over guidance scales and step counts with the toy metrics
(alignment: digit-classifier accuracy on the prompt's digit, the CLIP-score analogue; FD: Frechet
distance in the classifier's feature space to the real digits, the FID analogue), on the fixed
evaluation set (50 prompts per digit, fixed seeds).
"""

from __future__ import annotations

import inspect
import json
import math
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import torch
import tyro
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from tlcm.checks import check_device, check_gamma, check_out_dir, check_out_file
from tlcm.config import FrozenDtype
from tlcm.diffusion.denoiser import Guided
from tlcm.diffusion.sampling import sample_latents, teacher_timesteps
from tlcm.errors import TLCMError, note, run_cli
from tlcm.eval.generate import GenerateArgs
from tlcm.eval.generate import generate as generate_images
from tlcm.eval.reward_thresholds import reward_thresholds
from tlcm.eval.score import ScoreArgs
from tlcm.eval.score import score as score_images
from tlcm.files import write_failed
from tlcm.resume import run_folder, student_model, trained_imports, trained_model
from tlcm.summary import METRICS, RESULTS, best_teacher, from_repo_path, repo_path
from tlcm.toy import ASSET_DIR, MINIATURE_SD
from tlcm.toy.assets import METRIC_FILES
from tlcm.toy.metrics import ToyMetrics
from tlcm.toy.scores import evaluate_toy, student_scores
from tlcm.user_modules import cli_args

if TYPE_CHECKING:  # diffusers and peft are imported by the commands that load a model, not by --help
    from tlcm.models.base import BaseModel


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """Rows of dicts -> a GitHub markdown table over ``columns`` (floats with 3 decimals)."""
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


ASSET_FILES = METRIC_FILES
"""The metric assets ToyMetrics reads from ``--assets``."""


def _check_steps(steps: tuple[int, ...]) -> None:
    """--steps given: one or more step counts >= 1 (a student's upper bound, its M, needs the run)."""
    if not steps or min(steps) < 1:
        raise TLCMError(f"--steps must be one or more step counts >= 1, got {' '.join(map(str, steps))}")


def _check_args(
    samples_per_digit: int, model: Path, assets: Path, device: str, run: Path | None = None
) -> None:
    """The checks shared by teacher-table and student that need no model: one-line TLCMErrors
    (``run``: the run whose recorded base model ``model`` is, when --model did not give it)."""
    from tlcm.models.folders import check_model_folder

    if samples_per_digit < 1:
        raise TLCMError(f"--samples-per-digit must be >= 1, got {samples_per_digit}")
    check_device(device, "--device")
    check_model_folder(model, "--model", run, trained_imports(run) if run is not None else ())
    missing = [f for f in ASSET_FILES if not (Path(assets) / f).is_file()]
    if missing:
        raise TLCMError(
            f"--assets {assets} lacks {', '.join(missing)}: pass the asset folder of the build that made "
            "--model (python -m tlcm.toy.build --out DIR writes DIR)"
        )


def _load(model: Path, device: str, dtype: FrozenDtype, max_sequence_length: int | None) -> BaseModel:
    """The base model of teacher-table / student in the frozen ``dtype``."""
    from tlcm.models.base import BaseModel, frozen_dtype

    weights = frozen_dtype(dtype, device, autocast=True)
    return BaseModel.load(model, device, weights, "--model", max_sequence_length=max_sequence_length)


TEACHER_SAMPLERS = {True: "DDIM+CFG", False: "Euler+CFG"}
"""The teacher table's sampler by schedule (discrete: VP, DDIM; else flow, Euler), as its rows name it."""

COMMITTED_TABLE = RESULTS / "teacher_table.json"
"""teacher-table's default --out: the committed 500-prompt table of the miniature that compare, the
zoo and the ablation tables read."""


def teacher_table(
    guidance_scales: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0, 8.0),
    steps: tuple[int, ...] = (1, 2, 4, 8, 25, 50),
    samples_per_digit: int = 50,
    model: Path = MINIATURE_SD,
    assets: Path = ASSET_DIR,
    out: Path = Path("benchmarks/results/teacher_table.json"),
    device: str = "cpu",
    max_sequence_length: int | None = None,
    dtype: FrozenDtype = "auto",
) -> list[dict]:
    """Score the teacher (deterministic DDIM + CFG on a trailing grid; a flow model: Euler on its
    shifted grid) for every (w, steps) pair with the toy metrics. A rebuild of the miniature made by
    python -m tlcm.toy.build --out DIR is scored with --model DIR/miniature-sd --assets DIR.

    Args:
        guidance_scales: CFG scales w to score.
        steps: Step counts to score.
        samples_per_digit: Evaluation prompts per digit (x 10 prompts; FD depends on the count).
        model: The base model's diffusers folder.
        assets: The metric assets (digit classifier, reference statistics) of --model's build.
        out: The JSON rows to write; the markdown table goes beside it with the suffix .md.
        device: Torch device.
        max_sequence_length: T5 tokens of SD3 / FLUX prompts (the flow miniature: 8, its build's).
        dtype: The frozen weights' dtype (auto: bf16 on CUDA, fp32 on CPU; bf16 / fp16 autocast).
    """
    from tlcm.models.folders import scheduler_timesteps

    _check_steps(steps)
    _check_args(samples_per_digit, model, assets, device)
    if not guidance_scales or not all(math.isfinite(w) for w in guidance_scales):
        raise TLCMError(
            f"--guidance-scales must be one or more finite numbers, got {' '.join(map(str, guidance_scales))}"
        )
    timesteps = scheduler_timesteps(model)
    if max(steps) >= timesteps:
        raise TLCMError(
            f"--steps {max(steps)}: the teacher's DDIM grid has at most {timesteps - 1} steps on the "
            f"{timesteps}-timestep schedule of {model}: use step counts in 1..{timesteps - 1}"
        )
    check_out_file(out, "--out", (".json",))  # the markdown table goes next to it, as .md
    _check_committed_table(out, guidance_scales, steps, samples_per_digit, model)
    base = _load(model, device, dtype, max_sequence_length)
    sampler_name = TEACHER_SAMPLERS[base.schedule.discrete]
    metrics = ToyMetrics(assets)
    rows = []
    with Progress(console=Console(stderr=True)) as progress:
        task = progress.add_task("teacher table", total=len(guidance_scales) * len(steps))
        for w in guidance_scales:
            for n in steps:
                start = time.time()

                def sampler(cond, uncond, noise, gen, w=w, n=n):
                    grid = teacher_timesteps(n, base.schedule)
                    teacher = Guided(base.denoiser(), w, uncond[:1])
                    return sample_latents(teacher, base.schedule, cond, noise, grid, 0.0, gen)

                scores = evaluate_toy(base, sampler, samples_per_digit, metrics=metrics)
                rows.append(
                    {
                        "w": w,
                        "steps": n,
                        "prompts": 10 * samples_per_digit,
                        "model": repo_path(model),
                        "sampler": sampler_name,
                        "alignment": scores.alignment,
                        "fd": scores.fd,
                        "seconds": round(time.time() - start, 1),
                    }
                )
                progress.advance(task)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown_table(rows, ["w", "steps", "alignment", "fd"]))
    table = Table(
        "w", "steps", "alignment", "FD", title=f"teacher: {sampler_name}, {10 * samples_per_digit} prompts"
    )
    for r in rows:
        table.add_row(str(r["w"]), str(r["steps"]), f"{r['alignment']:.3f}", f"{r['fd']:.2f}")
    Console().print(table)
    Console().print(f"wrote {out} and {out.with_suffix('.md')}", highlight=False, soft_wrap=True)
    return rows


def _check_committed_table(out: Path, scales, steps, samples_per_digit: int, model: Path) -> None:
    """Refuse to replace the committed table (``COMMITTED_TABLE``, the default --out) with one made
    with other settings than its own (the defaults: every w and step count, 500 prompts, the
    miniature): a quick trial left out --out and overwrote the reference every table compares with."""
    if Path(out).resolve() != COMMITTED_TABLE.resolve():
        return
    defaults = {k: p.default for k, p in inspect.signature(teacher_table).parameters.items()}
    given = {"guidance_scales": tuple(scales), "steps": tuple(steps), "samples_per_digit": samples_per_digit}
    changed = [f"--{k.replace('_', '-')}" for k, v in given.items() if v != defaults[k]]
    if Path(model).resolve() != MINIATURE_SD.resolve():
        changed.append("--model")
    if changed:
        raise TLCMError(
            f"--out defaults to {repo_path(COMMITTED_TABLE)}, the committed 500-prompt table of the "
            f"miniature that compare, the zoo and the ablations read; with {', '.join(changed)} changed "
            "this table is another one: pass --out FILE.json (e.g. --out T.json)"
        )


def student(
    run: Path,
    steps: tuple[int, ...] = (),
    samples_per_digit: int = 50,
    model: Path | None = None,
    assets: Path = ASSET_DIR,
    device: str = "cpu",
    gamma: float | None = None,
    max_sequence_length: int | None = None,
    first_gamma: float | None = None,
    dtype: FrozenDtype = "auto",
    out: Path | None = None,
) -> list[dict]:
    """Score a trained student (its latest checkpoint) with the TLCM sampler (no CFG, the
    milestone timesteps of its grid) and the toy metrics; writes RUN/eval.json (replacing the
    end-of-run scores), or with --gamma / --first-gamma RUN/eval-gamma<g>[-first<f>].json, or --out.

    Args:
        run: The tlcm run folder (e.g. runs/tlcm-full).
        steps: Step counts to score (1..the student's M; default: those of 1, 2, 4, 8 <= M).
        samples_per_digit: Evaluation prompts per digit (x 10; tlcm.train's: 20; docs/results.md: 50).
        model: The base model's diffusers folder (default: the one the run was trained on).
        assets: The metric assets of --model's build (as in teacher-table).
        device: Torch device.
        gamma: The sampler's gamma for every move instead of the run's (1: LCM, 0: DDIM).
        max_sequence_length: T5 tokens of SD3 / FLUX prompts (default: the run's).
        first_gamma: The gamma of the first move (from pure noise) instead of the run's.
        dtype: The frozen weights' dtype (as in teacher-table).
        out: Write the scores here (.json) instead of into the run folder (one you cannot write to).
    """
    from tlcm.models.student import Student

    check_gamma(gamma, "--gamma")
    check_gamma(first_gamma, "--first-gamma")
    run = run_folder(run, "--run")
    if out is not None:
        check_out_file(out, "--out", (".json",))
    else:  # before any sampling: its scores would be lost at the end
        check_out_dir(run, "--run", "pass --out FILE.json to write the scores elsewhere")
    given = model
    model, max_sequence_length = student_model(run, model, max_sequence_length, note)
    if steps:  # default: the student grid's (after loading the run)
        _check_steps(steps)
    _check_args(samples_per_digit, model, assets, device, None if given else run)
    base = _load(model, device, dtype, max_sequence_length)
    trained = Student.from_run(base, run)
    grid = trained.config.grid.with_sampler(gamma, first_gamma)
    steps = steps or grid.shown_steps
    if not all(1 <= n <= grid.num_milestones for n in steps):
        shown = " ".join(map(str, steps))
        raise TLCMError(f"--steps must be in 1..{grid.num_milestones} (this student's M), got {shown}")
    rows = student_scores(base, trained.denoiser(), steps, samples_per_digit, ToyMetrics(assets), grid)
    name = "eval.json"
    if gamma is not None or first_gamma is not None:
        first = "" if grid.first_gamma is None else f"-first{grid.first_gamma:g}"
        name = f"eval-gamma{grid.gamma:g}{first}.json"
    path = Path(out) if out is not None else run / name
    replaced = out is None and path.is_file()
    try:
        path.write_text(json.dumps(rows, indent=1) + "\n")
    except OSError as err:
        raise write_failed(f"the scores to {path}", err) from err
    Console().print(markdown_table(rows, ["steps", "prompts", "alignment", "fd"]))
    Console().print(textwrap.fill(METRICS, 100), highlight=False, soft_wrap=True)
    kept = " (replacing its earlier scores; the model card RUN/student/README.md keeps the end-of-run ones)"
    Console().print(f"wrote {path}{kept if replaced else ''}", highlight=False, soft_wrap=True)
    return rows


def _score_rows(path: Path, keys: tuple[str, ...], command: str, flag: str) -> list[dict]:
    """The rows of a score file (a JSON list of objects with ``keys``) or a one-line TLCMError
    naming the file and the command that writes it."""
    fix = f"(re)write it with `python -m tlcm.evaluate {command}` or pass another {flag}"
    if not path.is_file():
        raise TLCMError(f"{path} is missing: {fix}")
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise TLCMError(f"{path} is not valid JSON ({err}): {fix}") from err
    if not isinstance(rows, list) or not all(isinstance(r, dict) and set(keys) <= r.keys() for r in rows):
        raise TLCMError(f"{path} is not a list of score rows with {', '.join(keys)}: {fix}")
    return rows


def prompt_count(rows: list[dict], path: Path) -> int | None:
    """The prompt count of score rows (None: not recorded, as in files written before it was);
    rows of ``path`` scored on several counts are refused (FD depends on the count)."""
    counts = {r.get("prompts") for r in rows}
    if len(recorded := sorted(counts - {None})) > 1:
        raise TLCMError(
            f"{path} holds rows scored on {' and '.join(map(str, recorded))} prompts: FD depends on the "
            "prompt count, so they do not compare; score them again on one count"
        )
    return counts.pop() if len(counts) == 1 else None


def compare(
    run: tuple[Path, ...] = (Path("runs/tlcm-full"),),
    teacher: Path = RESULTS / "teacher_table.json",
    out: Path | None = None,
) -> str:
    """Print (and with --out write) a markdown table of the students' scores (RUN/eval.json of each
    run) and the teacher's at its best w for each step count, scored on the same number of prompts
    (FD depends on it) by the same base model: the miniature's teacher on 500 prompts is the default
    --teacher, on 200 (what python -m tlcm.train scores) benchmarks/results/teacher_table_200.json.
    Each student row names its run and the gamma of the sampler that scored it.

    Args:
        run: The tlcm run folders whose eval.json to compare (python -m tlcm.evaluate student).
        teacher: The teacher table (python -m tlcm.evaluate teacher-table).
        out: A markdown file to write the table to.
    """
    runs = (run,) if isinstance(run, (str, Path)) else tuple(run)  # one Path from Python callers
    if not runs:
        raise TLCMError("--run needs one or more run folders (e.g. --run runs/tlcm-full)")
    students = {
        Path(folder): _score_rows(
            Path(folder) / "eval.json", ("steps", "alignment", "fd"), f"student --run {folder}", "--run"
        )
        for folder in runs
    }
    table = _score_rows(
        teacher, ("steps", "w", "alignment", "fd"), f"teacher-table --out {teacher}", "--teacher"
    )
    for folder, scores in students.items():
        _check_same_teacher(folder, scores, table, teacher)
    if out is not None:
        check_out_file(out, "--out", (".md",))
    rows = [
        {"model": f"teacher {_teacher_sampler(table)}", **{k: r.get(k) for k in TABLE_KEYS}}
        for r in best_teacher(table).values()
    ]
    for folder, scores in students.items():
        rows += [
            {"model": f"student {folder.name} ({_sampler(r)})", **{k: r.get(k) for k in TABLE_KEYS}, "w": "-"}
            for r in scores
        ]
    rows = [{**r, "prompts": r.get("prompts") or "not recorded"} for r in rows]
    rows.sort(key=lambda r: (r["steps"], r["model"]))
    text = markdown_table(rows, ["model", "steps", "w", "prompts", "alignment", "fd"])
    if out is not None:
        out.write_text(text)
    Console().print(text, markup=False, highlight=False)
    return text


TABLE_KEYS = ("steps", "w", "prompts", "alignment", "fd")
"""The columns compare takes from a score row."""


def _check_same_teacher(run: Path, rows: list[dict], table: list[dict], teacher: Path) -> None:
    """Refuse (one-line TLCMError) RUN/eval.json's ``rows`` beside the teacher ``table`` when they
    were scored on other prompt counts (FD depends on the count) or the table records another base
    model than the run's (a student compares only with its own teacher)."""
    base = (trained_model(run) or {}).get("path")  # the run's own base, not the miniature
    ours, theirs = prompt_count(rows, run / "eval.json"), prompt_count(table, teacher)
    if ours and theirs and ours != theirs:
        model = (
            f" --model {base}" if base is not None and Path(base).resolve() != MINIATURE_SD.resolve() else ""
        )
        raise TLCMError(
            f"{run / 'eval.json'} scores {ours} prompts, --teacher {teacher} {theirs}: FD depends on the "
            f"prompt count, so they do not compare; score the student on {theirs} (python -m tlcm.evaluate "
            f"student --run {run} --samples-per-digit {theirs // 10}) or pass a teacher table of {ours} "
            f"(python -m tlcm.evaluate teacher-table{model} --samples-per-digit {ours // 10} --out "
            "T.json; the miniature's at 200: benchmarks/results/teacher_table_200.json)"
        )
    recorded = {r["model"] for r in table if r.get("model")}
    if (
        base is not None
        and recorded
        and {Path(from_repo_path(m)).resolve() for m in recorded} != {Path(base).resolve()}
    ):
        raise TLCMError(
            f"--teacher {teacher} scores the model {', '.join(sorted(recorded))}, {run} was trained on "
            f"{repo_path(base)}: a student compares only with its own teacher; make its table with "
            f"python -m tlcm.evaluate teacher-table --model {repo_path(base)} --out T.json and pass "
            "--teacher T.json"
        )


def _teacher_sampler(table: list[dict]) -> str:
    """The sampler a teacher table's rows name ("DDIM+CFG", "Euler+CFG"), or both words where the
    rows predate the field."""
    names = sorted({r["sampler"] for r in table if r.get("sampler")})
    return " / ".join(names) if names else "DDIM (flow: Euler)+CFG"


def _sampler(row: dict) -> str:
    """A student score row's sampler in words: its gamma (and the first move's), where recorded."""
    if "gamma" not in row:
        return "sampler not recorded"
    first = row.get("first_gamma")
    return f"gamma {row['gamma']:g}" + ("" if first is None else f", first move {first:g}")


def generate(args: Annotated[GenerateArgs, tyro.conf.arg(name="")]) -> int:
    """Generate evaluation images of a real (SD1.5 / SDXL) teacher or student for a prompt set: COCO
    captions, PartiPrompts, HPSv2, .txt / .jsonl; resumable, torchrun-aware, fixed noise per prompt;
    see docs/evaluation.md."""
    return generate_images(args)


def score(args: Annotated[ScoreArgs, tyro.conf.arg(name="")]) -> list[dict]:
    """Score generated folders (FID, FID-T, CLIP score, PickScore, HPSv2.1, ImageReward, aesthetic)
    from local weights; writes the results table (markdown + json) and an image grid."""
    return score_images(args)


COMMANDS = {
    "teacher-table": teacher_table,
    "student": student,
    "compare": compare,
    "generate": generate,
    "score": score,
    "reward-thresholds": reward_thresholds,
}
"""The subcommands of ``python -m tlcm.evaluate``."""


def cli(args: list[str] | None = None):
    """The command line: parse ``args`` (default: sys.argv) and run the subcommand without autograd."""
    with torch.no_grad():
        return tyro.extras.subcommand_cli_from_dict(
            COMMANDS, args=cli_args(args), prog="python -m tlcm.evaluate"
        )


if __name__ == "__main__":
    run_cli(cli)
