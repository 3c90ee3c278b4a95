"""Every bad input of the table in tests/bad_inputs.py, through its real entry point in-process:
exit code 2, one "error: ..." line holding the expected fragment, no traceback; and the checks at
the edges of their ranges, called directly: a valid edge passes, one past it is refused."""

from dataclasses import replace

import pytest
import torch
from bad_inputs import CASES, DOC, Workspace, _cell, problems, run_case
from engine_helpers import shrink
from peft import LoraConfig

from recipes import PRESETS
from tlcm.checks import (
    check_counts,
    check_device,
    check_export_formats,
    check_gamma,
    check_guidance_scale,
    check_lora_targets,
    check_seed,
    env_world_size,
    validate_recipe,
)
from tlcm.errors import TLCMError
from tlcm.models.families import LCM_LORA_TARGETS


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """Where the tiny SD pipeline is saved (built on first use by a case that names {tiny})."""
    return tmp_path_factory.mktemp("tiny") / "tiny-sd"


def _param(case):
    marks = [pytest.mark.xfail(reason=case.xfail, strict=False)] if case.xfail else []
    return pytest.param(case, id=case.name, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_bad_input(case, tmp_path, tiny_root, capsys):
    if case.skip and (reason := case.skip()):
        pytest.skip(reason)
    ws = Workspace(tmp_path, tiny_root)
    outcome = run_case(case, ws)
    assert not problems(case, outcome, ws)
    leaked = capsys.readouterr()
    assert "Traceback" not in leaked.err + leaked.out


def test_the_reliability_doc_lists_every_case_in_table_order():
    """docs/reliability.md is generated from CASES (``python tests/bad_inputs.py``): a case added or
    renamed without regenerating it leaves the documented table short of what the suite checks."""
    rows = [line for line in DOC.read_text().splitlines() if line.startswith("| ") and " | " in line]
    names = [row[2:].split(" | ", 1)[0] for row in rows[1:]]  # rows[0]: the header
    assert names == [_cell(case.name) for case in CASES], "rerun: python tests/bad_inputs.py"


def test_check_lora_targets_names_unknown_and_valid_suffixes(tiny_sd):
    check_lora_targets(tiny_sd.unet, LCM_LORA_TARGETS)
    check_lora_targets(tiny_sd.unet, ["down_blocks.1.attentions.0.proj_in"])  # a full module name
    with pytest.raises(TLCMError) as info:
        check_lora_targets(tiny_sd.unet, ["to_q", "to_qq", "attn1"])  # attn1: a block, not a layer
    message = str(info.value)
    assert "to_qq, attn1 match no Linear/Conv layer of the UNet2DConditionModel" in message
    assert "to_k" in message and "\n" not in message
    with pytest.raises(TLCMError, match="is empty"):
        check_lora_targets(tiny_sd.unet, [])
    tiny_sd.unet.add_adapter(LoraConfig(r=2, target_modules=["to_q", "to_k"]), adapter_name="student")
    check_lora_targets(tiny_sd.unet, LCM_LORA_TARGETS)  # a UNet that already carries adapters
    with pytest.raises(TLCMError, match="lora_A"):  # peft's own sub-layers are not targets
        check_lora_targets(tiny_sd.unet, ["lora_A.student"])


def test_the_edges_of_every_range_pass_and_one_past_them_fails(monkeypatch):
    """Valid edges are accepted: guidance 0 (no guidance) and 100, gamma 0 (DDIM) and 1 (LCM),
    seeds down to -(2**63 - 1) (torch takes negative seeds), counts equal to their minimum; one past
    them is refused: gamma just outside [0, 1], an empty export-format list, WORLD_SIZE=0, cuda:2 on
    a machine with 2 GPUs (cuda:0, cuda:1)."""
    for gamma in (0.0, 1.0, None):
        check_gamma(gamma, "--gamma")
    for bad in (-1e-6, 1 + 1e-6):
        with pytest.raises(TLCMError, match="--gamma must be in \\[0, 1\\]"):
            check_gamma(bad, "--gamma")
    for scale in (0.0, 100.0):
        check_guidance_scale(scale, "--guidance-scale")
    for bad in (-1e-3, 100.5, float("nan"), float("inf")):
        with pytest.raises(TLCMError, match="--guidance-scale must be a finite number in 0..100"):
            check_guidance_scale(bad, "--guidance-scale")
    for seed in (-1, -(2**63) + 1, 2**63 - 1):
        check_seed(seed, "--seed")
    for seed in (-(2**63), 2**63):
        with pytest.raises(TLCMError, match="out of range"):
            check_seed(seed, "--seed")
    check_counts({"--n": 1, "--limit": 1})
    check_counts({"--steps": 0}, minimum=0)
    with pytest.raises(TLCMError, match="--n must be >= 1, got 0"):
        check_counts({"--n": 0})
    with pytest.raises(TLCMError, match="--formats is empty: use one or more of diffusers, kohya, pipeline"):
        check_export_formats([], "--formats")
    monkeypatch.setenv("WORLD_SIZE", "0")
    with pytest.raises(TLCMError, match="WORLD_SIZE='0' in the environment is not a positive integer"):
        env_world_size()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_device("cuda:1", "--device")
    with pytest.raises(TLCMError, match="torch sees 2 GPU\\(s\\): use cuda:0..cuda:1"):
        check_device("cuda:2", "--device")


def test_a_recipe_at_the_edges_of_its_ranges_validates(tmp_path):
    """The miniature's mlcd recipe (M = 8) with batch 65536 (MAX_BATCH_SIZE), batch 4 = 2
    processes x grad-accum 2 (one sample per micro-batch), inference steps 1..8 (8 = M) and
    guidance 0 passes, and so do max-skipped-fraction 0 (no skipped step tolerated) and 1; batch
    65537 and inference step 9 do not."""
    from tlcm.toy import MINIATURE_SD

    recipe = shrink(PRESETS["mlcd"], MINIATURE_SD, tmp_path / "run")
    phase = next(iter(recipe.phases))

    def with_phase(**fields):
        return replace(recipe, phases={phase: replace(recipe.phases[phase], **fields)})

    validate_recipe(with_phase(batch_size=65536), world_size=1)
    validate_recipe(with_phase(batch_size=4, grad_accum=2), world_size=2)
    validate_recipe(with_phase(batch_size=3, grad_accum=3), world_size=1)
    validate_recipe(replace(recipe, inference_steps=(1, 8)), world_size=1)
    validate_recipe(replace(recipe, model=replace(recipe.model, guidance_scale=0.0)), world_size=1)
    for fraction in (0.0, 1.0):
        runtime = replace(recipe.runtime, max_skipped_fraction=fraction)
        validate_recipe(replace(recipe, runtime=runtime), world_size=1)
    with pytest.raises(TLCMError, match="batch-size must be in 1..65536, got 65537"):
        validate_recipe(with_phase(batch_size=65537), world_size=1)
    with pytest.raises(TLCMError, match="inference-steps: each must be in 1..8 .*, got 9"):
        validate_recipe(replace(recipe, inference_steps=(9,)), world_size=1)
