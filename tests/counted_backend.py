"""A dynamo backend for the compile tests: aot_eager, counting the calls of every graph it compiled
(tests/test_loss_contract.py and its torchrun worker, tests/dp_worker.py). aot_eager runs the ops
dynamo and AOTAutograd traced with eager kernels, so a correct compile gives eager's bits; the
counts show that compiled graphs ran at all (a compile that silently ran eager gives them too)."""

from __future__ import annotations

import functools
import itertools
from collections import Counter

import torch
import torch._dynamo

COUNTED_AOT_EAGER = "tlcm-counted-aot-eager"
"""The backend's name (``--recipes.runtime.compile-backend``)."""

GRAPH_CALLS: Counter = Counter()
"""Calls of each graph the backend compiled in this process (key: the graph's number)."""

_GRAPH_NUMBERS = itertools.count()


@functools.partial(torch._dynamo.register_backend, name=COUNTED_AOT_EAGER)
def counted_aot_eager(graph: torch.fx.GraphModule, example_inputs: list):
    """dynamo's aot_eager backend for ``graph``, counting each call of the result in ``GRAPH_CALLS``."""
    run, number = torch._dynamo.lookup_backend("aot_eager")(graph, example_inputs), next(_GRAPH_NUMBERS)

    @functools.wraps(run)  # keeps the calling convention flags (_boxed_call) dynamo reads
    def counted(*args):
        GRAPH_CALLS[number] += 1
        return run(*args)

    return counted
