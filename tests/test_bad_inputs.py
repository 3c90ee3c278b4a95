"""Every bad input of the table in tests/bad_inputs.py, through its real entry point in-process:
exit code 2, one "error: ..." line holding the expected fragment, no traceback."""

import pytest
from bad_inputs import CASES, Workspace, problems, run_case


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
