"""The method zoo's pictures, drawn from its runs on disk (ablations.zoo_runs) with matplotlib
(``pip install -e '.[plot]'``; without it nothing is drawn and that is said once): ``plot``, FD and
alignment vs steps per method (docs/zoo-fd.png), and ``frontier``, alignment vs FD at 2 and 4
steps beside the teacher's CFG sweep (docs/zoo-frontier.png)."""

from __future__ import annotations

import math
import textwrap
from functools import cache
from typing import TYPE_CHECKING

from ablations.zoo_runs import (
    MINIATURE_NAMES,
    STEPS,
    better_sampler,
    collect,
    method_means,
    teacher_best,
    teacher_sweep,
)

if TYPE_CHECKING:
    from ablations.zoo import Args

PALETTE = [
    *("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"),
    *("#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5"),
]
"""Method colours of the plot: matplotlib's tab20 without its grays (gray marks the sampler key),
dark shades first, so that up to 18 methods get a colour each."""


@cache
def pyplot():
    """matplotlib.pyplot on the Agg backend; None without matplotlib, saying so once per process
    (one command: the tables are rewritten after every run, the notice comes once). The tests
    replace it with a fake pyplot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no matplotlib: no plots drawn (pip install -e '.[plot]')")
        return None
    return plt


LEGEND_COLUMNS = 4
"""Columns of the FD plot's legend (below the panels, which leave it a row of height per row)."""


def _panels(args: Args, names: list[str]) -> list[str]:
    """The miniatures with runs of any of ``names`` on disk (one column of the pictures each)."""
    return [m for m in ("unet", "flow") if any(collect(args.runs, m, n)[0] for n in names)]


def plot(args: Args, names: list[str]) -> None:
    """FD (top row) and alignment (bottom row) vs steps, one column per miniature with runs: per
    method the mean over its seeds with the own sampler (solid, the seeds' min-max shaded) and the
    TLCM sampler (dashed); the teacher's lowest-FD w per step count (black, dotted). One legend
    below the panels. Skipped without matplotlib."""
    plt, panels = pyplot(), _panels(args, names)
    if plt is None or not panels:
        return
    from matplotlib.lines import Line2D

    shown = [n for n in names if any(collect(args.runs, m, n)[0] for m in panels)]
    legend_rows = math.ceil((len(shown) + 3) / LEGEND_COLUMNS)  # + the teacher's and the two samplers'
    legend_inches = 0.2 + 0.15 * legend_rows
    height = 6.9 + legend_inches
    fig, axes = plt.subplots(2, len(panels), figsize=(5.2 * len(panels), height), squeeze=False, sharex=True)
    handles, seeds = [], set()
    for col, m in enumerate(panels):
        for i, name in enumerate(names):
            infos, scores = collect(args.runs, m, name)
            if not infos:
                continue
            seeds.add(len(infos))
            for sampler, style in (("own", "-"), ("tlcm", "--")):
                steps = sorted(scores[sampler])
                for row, key in enumerate(("fd", "alignment")):
                    values = [[r[key] for r in scores[sampler][n]] for n in steps]
                    ax = axes[row][col]
                    ax.plot(
                        steps,
                        [sum(v) / len(v) for v in values],
                        style,
                        marker="o",
                        ms=3,
                        color=PALETTE[i % len(PALETTE)],
                    )
                    if sampler == "own" and len(infos) > 1:
                        ax.fill_between(steps, [min(v) for v in values], [max(v) for v in values],
                                        color=PALETTE[i % len(PALETTE)], alpha=0.12, lw=0)  # fmt: skip
            if name not in [h.get_label() for h in handles]:
                handles.append(Line2D([], [], color=PALETTE[i % len(PALETTE)], marker="o", label=name))
        found = teacher_best(m, 10 * args.samples_per_digit)
        if found:
            best = found[1]
            steps = [n for n in STEPS if n in best]
            for row, key in enumerate(("fd", "alignment")):
                axes[row][col].plot(steps, [best[n][key] for n in steps], ":", marker="s", color="black")
        axes[0][col].set_title(MINIATURE_NAMES[m], fontsize=9)
        axes[0][col].set_yscale("log")
        axes[0][col].set_ylabel("FD (lower is better)")
        axes[1][col].set_ylabel("alignment (higher is better)")
        axes[1][col].set_xlabel("sampling steps")
        for ax in axes[:, col]:
            ax.set_xscale("log", base=2)
            ax.set_xticks(list(STEPS), [str(n) for n in STEPS])
            ax.grid(alpha=0.3)
    handles += [
        Line2D([], [], color="black", ls=":", marker="s", label="teacher, its best w per step count"),
        Line2D([], [], color="gray", ls="-", label="own sampler (shade: min-max over seeds)"),
        Line2D([], [], color="gray", ls="--", label="TLCM sampler"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=LEGEND_COLUMNS, fontsize=7, frameon=False)
    seeds_text = ", ".join(str(n) for n in sorted(seeds))
    fig.suptitle(f"Method zoo at equal denoiser evaluations ({seeds_text} seed(s) per method)", fontsize=10)
    fig.tight_layout(rect=(0, legend_inches / height, 1, 1))  # the legend below, clear of the x labels
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=110)
    plt.close(fig)


FRONTIER_STEPS = (2, 4)
"""The step counts of the frontier plot (issue 23's science targets)."""


FRONTIER_FD_SPAN = 3.0
"""The frontier plot's x range: up to this many times the lowest FD in the panel (the axis 8 %
beyond); methods and teacher w beyond it are listed in the panel, not drawn."""


FD_TICKS = (1, 1.5, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 150, 200)
"""The frontier's FD ticks, as plain numbers (a log axis spanning less than a decade otherwise
labels one tick, 10^1)."""
FRONTIER_AXES_POINTS = (0.8 * 6 * 72, 0.72 * 4.6 * 72)
"""The approximate size (width, height) in points of one frontier panel (figsize 6 x 4.6 inches
per panel, less its margins): what ``place_labels`` sizes the labels against."""


MARK = 0.006
"""Half the size of a point's marker in axes fractions (about 4 points on a frontier panel): no
label covers it; a point's own label starts ``gap`` (0.008) beyond it."""


def place_labels(
    anchors: list[tuple[float, float]], sizes: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """Where to put each label (its lower-left corner), all in axes fractions: beside its point
    ``anchors[i]`` (x, y), the first of the places tried (right above, right below, left above,
    left below, then further above and below) where its box ``sizes[i]`` (width, height) overlaps
    no label placed before it and no other point's marker (``MARK`` each side: a label beside
    another point reads as that point's) and stays inside the axes; the first place when none is
    free. Labels are placed in order of their points' height (top first), so that the search runs
    down."""
    gap = 0.008
    marks = [(x - MARK, y - MARK, 2 * MARK, 2 * MARK) for x, y in anchors]
    placed: list[tuple[float, float, float, float]] = []
    out: list[tuple[float, float]] = [(0.0, 0.0)] * len(anchors)
    for i in sorted(range(len(anchors)), key=lambda i: -anchors[i][1]):
        (x, y), (w, h) = anchors[i], sizes[i]
        tries = [
            (x + gap, y + gap),
            (x + gap, y - gap - h),
            (x - gap - w, y + gap),
            (x - gap - w, y - gap - h),
        ]
        tries += [(x + gap, y + gap + k * h) for k in (1, 2)] + [
            (x + gap, y - gap - h - k * h) for k in (1, 2, 3)
        ]

        def free(at: tuple[float, float], w: float = w, h: float = h) -> bool:
            ax_, ay = at
            inside = 0 <= ax_ and ax_ + w <= 1 and 0 <= ay and ay + h <= 1
            return inside and all(
                ax_ + w <= px or px + pw <= ax_ or ay + h <= py or py + ph <= ay
                for px, py, pw, ph in placed + marks
            )

        at = next((t for t in tries if free(t)), tries[0])
        placed.append((*at, w, h))
        out[i] = at
    return out


def annotate_points(
    ax, labels: list[tuple], x_range: tuple[float, float], y_range, size: tuple[float, float]
) -> None:
    """Label each point (text, FD, alignment, colour, font size) of an alignment-vs-FD panel whose x
    axis (log) spans ``x_range``, its y axis ``y_range``, and which is about ``size`` points wide
    and high, at ``place_labels``' places (a thin line back to a point whose label could not sit
    next to it). The zoo's frontier and ablations.plot's two-step frontier use it."""
    lo, hi = math.log(x_range[0]), math.log(x_range[1])
    anchors = [
        ((math.log(fd) - lo) / (hi - lo), (a - y_range[0]) / (y_range[1] - y_range[0]))
        for _, fd, a, _, _ in labels
    ]
    sizes = [(0.6 * pt * len(text) / size[0], 1.2 * pt / size[1]) for text, _, _, _, pt in labels]
    for (text, fd, a, color, pt), (w, h), at, (x, y) in zip(
        labels, sizes, place_labels(anchors, sizes), anchors, strict=True
    ):
        apart = max(at[0] - x, x - at[0] - w, at[1] - y, y - at[1] - h)  # the point to the label's box
        line = {"arrowprops": {"arrowstyle": "-", "lw": 0.4, "color": color}} if apart > 0.02 else {}
        ax.annotate(text, (fd, a), xytext=at, textcoords="axes fraction", fontsize=pt, color=color, **line)


def frontier(args: Args, names: list[str]) -> None:
    """Alignment (y) vs FD (x, log) at each of ``FRONTIER_STEPS`` (rows), one column per miniature
    with runs: per method its better sampler's mean over the seeds (the lower mean FD, as the
    verdict reads it), the seeds' FD min-max as a bar, labelled; the teacher's CFG sweep at that
    step count (black squares, labelled by w: the trade-off a student is judged against). Up and to
    the left is better. Skipped without matplotlib."""
    plt, panels = pyplot(), _panels(args, names)
    if plt is None or not panels:
        return
    rows = len(FRONTIER_STEPS)
    fig, axes = plt.subplots(rows, len(panels), figsize=(6 * len(panels), 4.6 * rows), squeeze=False)
    for col, m in enumerate(panels):
        means = {name: method_means(args.runs, m, name) for name in names}
        sweep = teacher_sweep(m, 10 * args.samples_per_digit)
        for row, n in enumerate(FRONTIER_STEPS):
            ax = axes[row][col]
            teacher = sorted((r for r in sweep if r["steps"] == n), key=lambda r: r["w"])
            points = {name: b for name in names if (b := better_sampler(means[name], n))}
            if not points:
                continue
            # the x range: up to FRONTIER_FD_SPAN x the lowest FD shown (outliers are listed instead)
            lowest = min([p[0] for p in points.values()] + [r["fd"] for r in teacher])
            x_max = FRONTIER_FD_SPAN * lowest
            off, labels = [], []
            for i, name in enumerate(names):
                if name not in points:
                    continue
                fd, align, _, seeds = points[name]
                if fd > x_max:
                    off.append(f"{name} {fd:.1f} ({align:.3f})")
                    continue
                color = PALETTE[i % len(PALETTE)]
                ax.errorbar(fd, align, xerr=[[fd - min(seeds)], [max(seeds) - fd]], fmt="o", ms=4,
                            color=color, elinewidth=0.8, capsize=2)  # fmt: skip
                labels.append((name, fd, align, color, 6.5))
            shown = [r for r in teacher if r["fd"] <= x_max]
            if shown:
                ax.plot([r["fd"] for r in shown], [r["alignment"] for r in shown], ":", marker="s",
                        ms=3.5, color="black")  # fmt: skip
                labels += [(f"w {r['w']:g}", r["fd"], r["alignment"], "black", 6) for r in shown]
            off += [
                f"teacher w {r['w']:g} {r['fd']:.1f} ({r['alignment']:.3f})"
                for r in teacher
                if r["fd"] > x_max
            ]
            x_range = (0.9 * lowest, 1.08 * x_max)  # room for a point at x_max and its bar's cap
            ys = [y for _, _, y, _, _ in labels]
            pad = 0.06 * ((max(ys) - min(ys)) or 0.01)
            y_range = (min(ys) - pad, max(ys) + 2 * pad)
            annotate_points(ax, labels, x_range, y_range, FRONTIER_AXES_POINTS)
            ax.set_ylim(*y_range)
            label = f"FD at {n} steps (lower is better; bar: min-max over seeds)"
            if off:
                label += "\n" + textwrap.fill("off the plot: " + "; ".join(off), 95)
            ax.set_xlabel(label, fontsize=8)
            ax.set_xlim(*x_range)
            ax.set_xscale("log")
            ticks = [t for t in FD_TICKS if x_range[0] <= t <= x_range[1]]
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.minorticks_off()
            ax.set_title(f"{MINIATURE_NAMES[m]}, {n} steps", fontsize=9)
            ax.set_ylabel(f"alignment at {n} steps (higher is better)")
            ax.grid(alpha=0.3)
    fig.suptitle(
        "Method zoo: each method at its better sampler (mean over seeds); black: the teacher's CFG sweep",
        fontsize=10,
    )
    fig.tight_layout()
    args.frontier.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.frontier, dpi=110)
    plt.close(fig)
