"""Every bad input of the table in tests/bad_inputs.py, through its real entry point in-process:
exit code 2, one "error: ..." line holding the expected fragment, no traceback."""

import pytest
from bad_inputs import CASES, Workspace, problems, run_case
from peft import LoraConfig

from tlcm.checks import check_lora_targets
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
