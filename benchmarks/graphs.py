"""Replayed no-grad calls (``--recipes.runtime.graphs``) vs eager: the miniature's MLCD step
(``recipes:mlcd``) on this machine, two Trainers in one run with the same weights and draws.

Per batch size: ``--warmup`` untimed steps each (the captures of the shapes met so far, their
seconds kept), then ``--steps`` timed steps, the two Trainers alternating which goes first;
medians, the ratio, the captures made before and during the timed steps, and whether the logged
terms and the final LoRA weights are equal bit for bit (on the CPU the capture is an aten trace
of the eager ops; on CUDA a CUDA graph, for which benchmarks/gpu.py's speed section is the
measurement that counts: on the CPU the host's share of a step is smaller than on a GPU).

    .venv/bin/python -m benchmarks.graphs [--batch-sizes 1 16] [--warmup 20] [--steps 30]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.common import (
    RESULTS,
    add_common_args,
    console,
    provenance,
    resolve_model,
    setup_torch,
    show_table,
    write_results,
)
from recipes.tlcm import mlcd
from tlcm.engine import Trainer


def trainer(model: Path, device: str, batch: int, graphs: bool, out: Path):
    """A Trainer of ``recipes:mlcd`` at ``batch`` on ``model`` and its built phase."""
    recipe = mlcd()
    recipe = replace(recipe, runtime=replace(recipe.runtime, out_dir=out, device=device, graphs=graphs))
    recipe = replace(recipe, model=replace(recipe.model, path=model))
    phase = replace(recipe.phases["mlcd"], batch_size=batch)
    recipe = replace(recipe, phases={"mlcd": phase})
    built = Trainer(recipe)
    return built, built.build_phase("mlcd", phase, 0)


def measure(model: Path, device: str, batch: int, warmup: int, steps: int) -> dict:
    """Eager and graphed Trainers stepped side by side (see the module docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        runs = {g: trainer(model, device, batch, g, Path(tmp) / str(g)) for g in (False, True)}
        warm, in_warmup = {g: 0.0 for g in runs}, 0
        times: dict[bool, list[float]] = {g: [] for g in runs}
        terms_equal = True
        for step in range(warmup + steps):
            order = (False, True) if step % 2 == 0 else (True, False)
            terms = {}
            for g in order:
                t0 = time.perf_counter()
                terms[g], _ = runs[g][0].train_step(runs[g][1], step)
                elapsed = time.perf_counter() - t0
                if step < warmup:
                    warm[g] += elapsed
                else:
                    times[g].append(elapsed)
            terms_equal &= all(torch.equal(terms[False][k], terms[True][k]) for k in terms[False])
            if step == warmup - 1:
                in_warmup = runs[True][0].base.graphs.captures
        weights = [r[0].student.state_dict() for r in (runs[False], runs[True])]
        graphs = runs[True][0].base.graphs
        return {
            "batch": batch,
            "eager_ms": 1e3 * statistics.median(times[False]),
            "graphs_ms": 1e3 * statistics.median(times[True]),
            "warmup_s": warm,
            "captures_in_warmup": in_warmup,
            "captures_timed": graphs.captures - in_warmup,
            "replays": graphs.replays,
            "terms_bit_identical": terms_equal,
            "weights_bit_identical": all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0]),
        }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.graphs", description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps per Trainer (captures)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per Trainer")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args()
    device = setup_torch(args.threads, args.device)
    model, label = resolve_model(args.model)
    rows = []
    for batch in args.batch_sizes:
        console.print(f"batch {batch}: {args.warmup} + {args.steps} steps per Trainer")
        rows.append(measure(model, device, batch, args.warmup, args.steps))
    columns = ["batch", "eager ms / step", "graphs ms / step", "x eager", "captures (warm-up + timed)"]
    columns += ["warm-up s (eager / graphs)", "bit-identical (terms, weights)"]
    cells = [
        [
            r["batch"],
            f"{r['eager_ms']:.1f}",
            f"{r['graphs_ms']:.1f}",
            f"{r['eager_ms'] / r['graphs_ms']:.2f}",
            f"{r['captures_in_warmup']} + {r['captures_timed']}",
            f"{r['warmup_s'][False]:.1f} / {r['warmup_s'][True]:.1f}",
            f"{r['terms_bit_identical']}, {r['weights_bit_identical']}",
        ]
        for r in rows
    ]
    title = "Replayed no-grad calls vs eager: recipes:mlcd steps"
    show_table(title, columns, cells)
    notes = [
        "x eager: median eager step / median graphed step, the same steps (weights, draws) side by side",
        "captures: shapes met (MDS rounds run on the samples still descending: their count varies); "
        "the warm-up seconds include them (CPU: an aten trace, ~0.5-1 s per shape)",
        "the CPU's replay skips the modules' Python but runs the same kernels; a CUDA graph also "
        "launches them at once: the GPU's number is benchmarks/gpu.py's speed section",
    ]
    meta = provenance(device, args.threads, model, label)
    write_results(
        "graphs", title, meta, [(title, columns, cells)], {"rows": rows}, notes, args.out or RESULTS
    )


if __name__ == "__main__":
    main()
