"""The twenty-first round (2026-12-08, each mutant written with its test and caught): a masked
family (``Conditioning.attention_mask``) in the loss contract's modes; a rank 0 error under torchrun
with two real processes."""

from run import Mutant

AM = "tests/test_attention_mask.py"
T_MODES = f"{AM}::test_a_masked_family_keeps_the_loss_contract_in_every_mode[dmd]"

MUTANTS = [
    Mutant(
        "graphs-replay-unmasked",
        "tlcm/models/graphs.py",
        "if getattr(cond, f.name) is not None)",
        'if getattr(cond, f.name) is not None and f.name != "attention_mask")',
        (T_MODES,),
        "--recipes.runtime.graphs replays a masked family's no-grad calls without the mask",
    ),
    Mutant(
        "graphs-capture-freezes-the-mask",
        "tlcm/models/graphs.py",
        "            static.copy_(value)\n",
        "            static.copy_(value) if value.is_floating_point() or value.dim() != 2 else None\n",
        (T_MODES,),
        "a replay runs with the first captured call's mask: another prompt's padding masked",
    ),
]

T_RANK0 = "tests/test_preemption.py::test_an_error_of_rank_0_ends_rank_1_without_a_traceback"
MUTANTS += [
    Mutant(
        "stopped-rank-speaks",
        "tlcm/errors.py",
        "        if _stopped_within(RANK_GRACE_SECONDS):\n",
        "        if False:\n",
        (T_RANK0,),
        "every rank repeats an error; rank 1 says 'SIGTERM: could not save' after rank 0's full disk",
    ),
]
