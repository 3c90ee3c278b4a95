"""Breakages of the replayed no-grad calls (tlcm/models/graphs.py, ``--recipes.runtime.graphs``):
what a capture must freeze in its key, copy in and clone out; see run.py."""

from run import Mutant

GRAPHS = "tlcm/models/graphs.py"
TESTS = ("tests/test_graphs.py",)

MUTANTS = [
    Mutant(
        "key-without-adapter-selection",
        GRAPHS,
        "            _selection(net, self._layers),\n",
        "",
        TESTS,
        "a capture made with the LoRA on replays for the teacher (adapters off)",
    ),
    Mutant(
        "key-without-training-mode",
        GRAPHS,
        "            net.training,\n",
        "",
        TESTS,
        "eval-mode captures replayed in train mode",
    ),
    Mutant(
        "key-without-autocast",
        GRAPHS,
        "            autocast,\n            torch.is_inference_mode_enabled(),",
        "            torch.is_inference_mode_enabled(),",
        TESTS,
        "an fp32 capture replayed under bf16 autocast",
    ),
    Mutant(
        "key-without-shapes",
        GRAPHS,
        "            shapes,\n        )",
        "        )",
        TESTS,
        "one capture for every batch size",
    ),
    Mutant(
        "inputs-not-copied",
        GRAPHS,
        "            static.copy_(value)",
        "            pass",
        TESTS,
        "every replay recomputes the capture's first inputs",
    ),
    Mutant(
        "output-not-cloned",
        GRAPHS,
        "        return self.output.clone()  # the static output",
        "        return self.output  # the static output",
        TESTS,
        "the next replay overwrites what the caller holds",
    ),
    Mutant(
        "grad-calls-replayed",
        "tlcm/models/base.py",
        "if self.graphs is not None and not torch.is_grad_enabled():",
        "if self.graphs is not None:",
        TESTS,
        "the student's forward with gradients replayed: no gradients reach the LoRA",
    ),
    Mutant(
        "host-reads-allowed",
        GRAPHS,
        "        if reads:  # of a value",
        "        if False:  # of a value",
        TESTS,
        "a call that reads a tensor on the host is frozen at its capture's value",
    ),
]
