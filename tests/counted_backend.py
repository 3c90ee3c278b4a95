"""dynamo backends for the compile tests: aot_eager and inductor, counting the calls of every graph
they compiled (tests/test_loss_contract.py and its torchrun worker, tests/dp_worker.py). aot_eager
runs the ops dynamo and AOTAutograd traced with eager kernels, so a correct compile gives eager's
bits, and the same bits come from a compile that silently ran eager: the counts tell them apart."""

from __future__ import annotations

import functools
import itertools
from collections import Counter

import torch
import torch._dynamo

GRAPH_CALLS: Counter = Counter()
"""Calls of each graph a counted backend compiled in this process (key: the graph's number)."""

_GRAPH_NUMBERS = itertools.count()


def _register(backend: str) -> str:
    """Register ``backend`` counted as "tlcm-counted-<backend>" and return that name."""

    def compile_graph(graph: torch.fx.GraphModule, example_inputs: list):
        run, number = torch._dynamo.lookup_backend(backend)(graph, example_inputs), next(_GRAPH_NUMBERS)

        @functools.wraps(run)  # keeps the calling convention flags (_boxed_call) dynamo reads
        def counted(*args):
            GRAPH_CALLS[number] += 1
            return run(*args)

        return counted

    name = f"tlcm-counted-{backend}"
    torch._dynamo.register_backend(compile_graph, name=name)
    return name


COUNTED = {backend: _register(backend) for backend in ("aot_eager", "inductor")}
"""Backend -> the name of its counted form (``--recipes.runtime.compile-backend``)."""


def graphs_called(run):
    """(``run()``'s result, how many compiled graphs of the counted backends it called)."""
    before = GRAPH_CALLS.copy()
    result = run()
    return result, len(GRAPH_CALLS - before)
