"""FD and alignment vs sampling steps: the teacher, the shipped student and the ladder's main rows;
and the 2-step alignment / FD of every row against the issue's alignment bars.

``python -m ablations.plot [--rows NAME ...] [--out docs/fd-vs-steps.png]`` (needs matplotlib:
``pip install -e '.[plot]'``). Teacher curves come from ``python -m tlcm.evaluate teacher-table``
(benchmarks/results/teacher_table.json: DDIM + CFG at each w, and the best w per step count);
student curves from the ablation runs on disk (``python -m ablations.run --seeds 0 1 2``): the
mean over seeds, with the min-max spread as error bars.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import tyro

from tlcm.errors import TLCMError, run_cli


@dataclass
class Args:
    """Plot FD and alignment vs steps for the teacher and ablation rows."""

    rows: tuple[str, ...] = ("mds-states-l2", "mlcd+lcd-l2", "tlcm-full", "tlcm-paper")
    """Ablation variants to draw (each: mean over its seeds in ``runs``)."""
    runs: Path = Path("runs/ablations")
    """Folder of the ablation runs (``s<seed>/<variant>/eval.json``)."""
    teacher_table: Path = Path("benchmarks/results/teacher_table.json")
    """The teacher table (python -m tlcm.evaluate teacher-table)."""
    teacher_w: tuple[float, ...] = (1.5, 2.0)
    """Guidance scales drawn as teacher curves (besides the best w per step count)."""
    out: Path = Path("docs/fd-vs-steps.png")
    """Output PNG of the curves."""
    frontier_out: Path = Path("docs/two-step-frontier.png")
    """Output PNG of 2-step alignment vs 2-step FD: every ablation row on disk (mean over its
    seeds) and the teacher's 2-step DDIM at each w, with the issue's alignment bars."""


def _teacher_curves(path: Path, ws: tuple[float, ...]) -> dict[str, dict[int, tuple[float, float]]]:
    """Label -> steps -> (FD, alignment): one curve per w in ``ws`` and the best-FD w per step count."""
    if not path.is_file():
        raise TLCMError(f"{path} does not exist: run python -m tlcm.evaluate teacher-table first")
    table = json.loads(path.read_text())
    curves: dict[str, dict[int, tuple[float, float]]] = {}
    for w in ws:
        curves[f"teacher DDIM, w = {w:g}"] = {
            r["steps"]: (r["fd"], r["alignment"]) for r in table if r["w"] == w and r["steps"] <= 8
        }
    best: dict[int, tuple[float, float]] = {}
    for r in table:
        if r["steps"] <= 8 and (r["steps"] not in best or r["fd"] < best[r["steps"]][0]):
            best[r["steps"]] = (r["fd"], r["alignment"])
    curves["teacher DDIM, best w per step count"] = best
    return curves


def _students(args: Args) -> dict[str, dict[int, list[dict]]]:
    """Row -> steps -> its runs' eval rows, for each of ``args.rows``; an unknown variant or a row
    without runs refused in one line."""
    from ablations.run import scores
    from ablations.variants import VARIANTS, unknown_variant

    out = {}
    for name in args.rows:
        rows = scores(args.runs, name)
        if not rows and name not in VARIANTS:  # a retired variant's runs on disk are still drawn
            raise unknown_variant(name, "--rows: unknown variant")
        if not rows:
            raise TLCMError(f"no runs of {name!r} in {args.runs}: python -m ablations.run --variants {name}")
        out[name] = rows
    return out


def _prompts(args: Args) -> int | None:
    """The prompt count shared by the teacher table and the runs drawn (--rows and, in the
    frontier, every row on disk; None: not recorded); other counts refused as ``tlcm.evaluate
    compare`` does, since FD depends on the count."""
    from ablations.run import describe_counts, prompt_counts, sources
    from ablations.variants import ROWS
    from tlcm.evaluate import prompt_count

    theirs = prompt_count(json.loads(args.teacher_table.read_text()), args.teacher_table)
    counts = prompt_counts(sources(args.runs, list(dict.fromkeys([*args.rows, *(v.name for v in ROWS)]))))
    if len(counts) > 1:
        raise TLCMError(
            f"the runs in {args.runs} were scored on {describe_counts(counts)}: FD depends on the prompt "
            "count, so they do not compare; score them again on one (python -m ablations.run --rescore "
            "--variants ... --samples-per-digit N) or pass --runs of one count"
        )
    ours = next(iter(counts), None)
    if ours and theirs and ours != theirs:
        raise TLCMError(
            f"the runs in {args.runs} were scored on {ours} prompts, --teacher-table {args.teacher_table} "
            f"on {theirs}: FD depends on the prompt count, so they do not compare; pass a teacher table of "
            f"{ours} (python -m tlcm.evaluate teacher-table --samples-per-digit {ours // 10} --out T.json) "
            f"or score the runs on {theirs} (python -m ablations.run --rescore --variants "
            f"{' '.join(args.rows)} --samples-per-digit {theirs // 10})"
        )
    return ours or theirs


def _frontier(plt, args: Args) -> None:
    """2-step alignment vs FD of every row in ``args.runs`` and of the teacher's 2-step DDIM; the
    horizontal lines are "teacher at 50 steps - 0.03" for w = 2 and w = 1.5."""
    from ablations.run import scores
    from ablations.variants import ROWS
    from ablations.zoo_plots import FD_TICKS, annotate_points

    table = json.loads(args.teacher_table.read_text())
    fig, ax = plt.subplots(figsize=(7, 4.6))
    labels = []  # (text, FD, alignment, colour, font size): placed once every point is known
    points = []  # (FD, alignment) of every point drawn, the grey ones too: the axes' ranges
    for v in ROWS:
        rows = scores(args.runs, v.name).get(2)
        if not rows:
            continue
        fd = sum(r["fd"] for r in rows) / len(rows)
        align = sum(r["alignment"] for r in rows) / len(rows)
        points.append((fd, align))
        if len(rows) == 1:  # one-seed rows: grey, unlabelled (docs/ablations.md has their numbers)
            ax.scatter(fd, align, color="tab:gray", s=10, alpha=0.6)
            continue
        color = "tab:red" if v.name == "tlcm-full" else "tab:blue"
        ax.scatter(fd, align, color=color, s=30)
        labels.append((f"{v.name} ({len(rows)})", fd, align, color, 7))
    teacher = [r for r in table if r["steps"] == 2 and r["fd"] < 20]
    ax.scatter([r["fd"] for r in teacher], [r["alignment"] for r in teacher], marker="s", color="black")
    labels += [(f"teacher w {r['w']:g}", r["fd"], r["alignment"], "black", 6) for r in teacher]
    bars = {}
    for w in (2.0, 1.5):
        at50 = [r["alignment"] for r in table if r["steps"] == 50 and r["w"] == w]
        if at50:
            bars[w] = at50[0] - 0.03
    points += [(r["fd"], r["alignment"]) for r in teacher]
    if points:
        fds, aligns = [p[0] for p in points], [p[1] for p in points] + list(bars.values())
        x_range = (0.9 * min(fds), 1.15 * max(fds))
        span = max(aligns) - min(aligns) or 0.01
        y_range = (min(aligns) - 0.08 * span, max(aligns) + 0.08 * span)
        annotate_points(ax, labels, x_range, y_range, (0.85 * 7 * 72, 0.8 * 4.6 * 72))
        ax.set_xlim(*x_range)
        ax.set_ylim(*y_range)
    for w, style in ((2.0, "-"), (1.5, "--")):
        if w in bars:
            label = f"bar: teacher w = {w:g} at 50 steps - 0.03 = {bars[w]:.3f}"
            ax.axhline(bars[w], color="gray", linestyle=style, linewidth=1, label=label)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_xscale("log")
    if points:
        ticks = [t for t in FD_TICKS if x_range[0] <= t <= x_range[1]]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
    ax.set_xlabel("FD at 2 steps (lower is better)")
    ax.set_ylabel("alignment at 2 steps")
    ax.set_title("2 steps: ablation rows (seeds), one-seed rows grey; teacher 2-step DDIM", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.frontier_out, dpi=110)
    print(f"wrote {args.frontier_out}")


def main(args: Args) -> None:
    """Check for matplotlib first (before the ladder's modules, which import torch), then plot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise TLCMError("ablations.plot needs matplotlib: pip install -e '.[plot]'") from err
    curves = _teacher_curves(args.teacher_table, args.teacher_w)
    students = _students(args)
    prompts = _prompts(args)
    fig, (ax_fd, ax_align) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, (label, curve) in enumerate(curves.items()):
        steps = sorted(curve)
        style = {
            "color": "black",
            "linestyle": "--" if "best" in label else (":", "-.")[i % 2],
            "marker": "s",
        }
        ax_fd.plot(steps, [curve[n][0] for n in steps], label=label, **style)
        ax_align.plot(steps, [curve[n][1] for n in steps], label=label, **style)
    for name, rows in students.items():
        steps = sorted(rows)
        for ax, key in ((ax_fd, "fd"), (ax_align, "alignment")):
            values = [[r[key] for r in rows[n]] for n in steps]
            mean = [sum(v) / len(v) for v in values]
            pairs = list(zip(mean, values, strict=True))
            err = [[m - min(v) for m, v in pairs], [max(v) - m for m, v in pairs]]
            seeds = len(values[0])
            ax.errorbar(steps, mean, yerr=err, marker="o", capsize=3, label=f"{name} ({seeds} seeds)")
    for ax, title in ((ax_fd, "FD (lower is better)"), (ax_align, "alignment (higher is better)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 2, 4, 8], ["1", "2", "4", "8"])
        ax.set_xlabel("sampling steps")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    ax_fd.set_yscale("log")
    ax_align.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Two-ink miniature, {prompts or 'an unrecorded number of'} prompts, fixed noise")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    _frontier(plt, args)


if __name__ == "__main__":
    run_cli(lambda: main(tyro.cli(Args, prog="python -m ablations.plot")))
