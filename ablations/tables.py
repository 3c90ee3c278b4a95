"""The cells the ablation ladder's table (ablations/run.py) and the method zoo's (ablations/zoo.py)
both print: a value over seeds, and the teacher's best row at one step count."""

from __future__ import annotations


def spread(values: list[float], digits: int) -> str:
    """``mean`` for one value, ``mean (min-max)`` for several."""
    mean = f"{sum(values) / len(values):.{digits}f}"
    return mean if len(values) == 1 else f"{mean} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def teacher_cell(best: dict[int, dict], steps: int) -> str:
    """``alignment / FD (w w)`` of the teacher's lowest-FD row at ``steps`` (``best``:
    ``tlcm.summary.best_teacher``'s steps -> row), "-" where the table has none."""
    if steps not in best:
        return "-"
    row = best[steps]
    return f"{row['alignment']:.3f} / {row['fd']:.2f} (w {row['w']:g})"
