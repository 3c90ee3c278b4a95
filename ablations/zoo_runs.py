"""The method zoo's finished runs on disk and the miniatures' teacher tables: where a run lives
(``RUNS/<miniature>/s<seed>/<method>``), its zoo.json and score files, their means per sampler
and step count, and the committed teacher rows they are set beside. What ablations.zoo's tables,
ablations.zoo_plots and ablations.zoo_checks read; nothing here trains or writes."""

from __future__ import annotations

import json
from pathlib import Path

from tlcm.diffusion.milestones import SHOWN_STEPS
from tlcm.toy import MINIATURE_SD, MINIATURE_SD3

STEPS = SHOWN_STEPS
"""Step counts every method is scored at (those <= its M) and the tables' columns."""
SAMPLERS = {"own": "eval.json", "tlcm": "eval-tlcm-sampler.json"}
"""Sampler -> the score file of a run: the method's own StudentGrid, the shipped TLCM sampler."""
MINIATURE_NAMES = {"unet": "UNet miniature (MINIATURE_SD)", "flow": "flow miniature (MINIATURE_SD3)"}
"""Miniature -> its name in the tables and plots (their model: ``MINIATURE_MODELS``)."""
MINIATURE_MODELS = {"unet": MINIATURE_SD, "flow": MINIATURE_SD3}
"""Miniature -> the pipeline folder its runs train (the presets' MINIATURE_SD; flow: the model swap
of the tlcm-full-flow preset) and its committed teacher table was scored on."""


def run_dir(runs: Path, miniature: str, seed: int, method: str) -> Path:
    """The folder of one run."""
    return runs / miniature / f"s{seed}" / method


def every_run(runs: Path, names: list[str]):
    """(folder, miniature, seed, method, ``finished_runs`` entry) of every finished run of ``names``
    in ``runs``."""
    for m in MINIATURE_NAMES:
        for name in names:
            for folder, run in finished_runs(runs, m, name).items():
                seed = int(folder.removeprefix("s"))
                yield run_dir(runs, m, seed, name), m, seed, name, run


def finished_runs(runs: Path, miniature: str, method: str) -> dict[str, dict]:
    """Every finished seed of ``method`` on disk, in seed-folder order: {"s<seed>": {"run": its
    zoo.json, "<sampler>": its score rows, for each sampler scored}}."""
    out = {}
    for info_path in sorted((runs / miniature).glob(f"s*/{method}/zoo.json")):
        run = {"run": json.loads(info_path.read_text())}
        for sampler, name in SAMPLERS.items():
            path = info_path.parent / name
            if path.is_file():
                run[sampler] = json.loads(path.read_text())
        out[info_path.parent.parent.name] = run
    return out


def collect(runs: Path, miniature: str, method: str) -> tuple[list[dict], dict[str, dict[int, list[dict]]]]:
    """(the zoo.json of every finished seed, sampler -> steps -> score rows over those seeds)."""
    infos, scores = [], {s: {} for s in SAMPLERS}
    for run in finished_runs(runs, miniature, method).values():
        infos.append(run["run"])
        for sampler in SAMPLERS:
            for row in run.get(sampler, []):
                scores[sampler].setdefault(row["steps"], []).append(row)
    return infos, scores


def committed_teacher_of(miniature: str, prompts: int) -> tuple[Path, dict[int, dict]] | None:
    """tlcm.summary.committed_teacher for ``miniature``'s model at ``prompts`` prompts."""
    from tlcm.summary import committed_teacher

    return committed_teacher(MINIATURE_MODELS[miniature], prompts)


def teacher_best(miniature: str, prompts: int) -> tuple[str, dict[int, dict]] | None:
    """(file, steps -> the teacher's lowest-FD row) of the committed teacher table of ``miniature``
    at ``prompts`` prompts, or None."""
    from tlcm.summary import repo_path

    found = committed_teacher_of(miniature, prompts)
    return (repo_path(found[0]), found[1]) if found else None


def teacher_sweep(miniature: str, prompts: int) -> list[dict]:
    """Every row (w, steps, alignment, FD) of the committed teacher table of ``miniature`` at
    ``prompts`` prompts (the one ``teacher_best`` reads), or [] without one."""
    found = committed_teacher_of(miniature, prompts)
    return json.loads(found[0].read_text()) if found else []


def method_means(runs: Path, miniature: str, name: str) -> dict[tuple[str, int], tuple[float, float, list]]:
    """(sampler, steps) -> (mean alignment, mean FD, FD per seed) of a method's runs on disk."""
    out = {}
    for sampler, rows_by_steps in collect(runs, miniature, name)[1].items():
        for n, rows in rows_by_steps.items():
            fd = [r["fd"] for r in rows]
            out[sampler, n] = (sum(r["alignment"] for r in rows) / len(rows), sum(fd) / len(fd), fd)
    return out


def better_sampler(means: dict, steps: int) -> tuple[float, float, str, list[float]] | None:
    """(mean FD, mean alignment, sampler, FD per seed) of the sampler with the lower mean FD at
    ``steps`` among a method's ``method_means``, or None where it has no score there."""
    cells = [(v[1], v[0], s, v[2]) for (s, k), v in means.items() if k == steps]
    return min(cells) if cells else None
