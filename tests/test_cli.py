"""Bad input: one clear line and exit code 2, never a bare traceback (tlcm.train / tlcm.sample); --help:
quick (no model library imported) and every tlcm.evaluate option documented."""

import inspect
import subprocess
import sys

import pytest
import tyro

from recipes import PRESETS
from tlcm.errors import run_cli
from tlcm.sample import SampleArgs
from tlcm.sample import main as sample_main
from tlcm.toy import MINIATURE_PROMPTS
from tlcm.train import TrainArgs
from tlcm.train import cli as train_cli
from tlcm.train import main as train_main


def _train(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: train_main(tyro.cli(TrainArgs, args=argv, config=(tyro.conf.CascadeSubcommandArgs,))))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return " ".join(err.split())


def test_unknown_recipe_and_field(capsys):
    assert "recipes:tlcm-full" in _train(["recipes:nope"], capsys)
    assert "--recipes.phases.mlcd.stpes" in _train(
        ["recipes:mlcd", "--recipes.phases.mlcd.stpes", "3"], capsys
    )


def test_missing_and_non_diffusers_model_folder(capsys, tmp_path):
    err = _train(["recipes:mlcd", "--recipes.model.path", str(tmp_path / "absent")], capsys)
    assert "error:" in err and "does not exist" in err and "absent" in err
    err = _train(["recipes:mlcd", "--recipes.model.path", str(tmp_path)], capsys)
    assert "not a diffusers pipeline folder (no model_index.json)" in err


def test_empty_prompt_file(capsys, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n  \n")
    err = _train(
        ["recipes:mlcd", "--recipes.data.prompts", str(prompts), "--recipes.runtime.out-dir", str(tmp_path)],
        capsys,
    )
    assert f"prompt file {prompts} holds no prompts" in err
    bad = tmp_path / "prompts.jsonl"
    bad.write_text('{"prompt": "a digit"}\n{"text": "no prompt field"}\n')
    err = _train(
        ["recipes:mlcd", "--recipes.data.prompts", str(bad), "--recipes.runtime.out-dir", str(tmp_path)],
        capsys,
    )
    assert f"{bad}:2" in err and '"prompt" field' in err


def test_steps_and_milestones_out_of_range(capsys, tmp_path):
    out = ["--recipes.runtime.out-dir", str(tmp_path)]
    err = _train(["recipes:mlcd", "--recipes.phases.mlcd.steps", "0", *out], capsys)
    assert "--recipes.phases.mlcd.steps must be >= 1, got 0" in err
    err = _train(["recipes:mlcd", "--recipes.student.grid.num-milestones", "0", *out], capsys)
    assert "--recipes.student.grid: num_milestones (M) must be in 1..1000, got 0" in err
    err = _train(["recipes:lcd", "--recipes.student.grid.steps", "9", *out], capsys)
    assert "--recipes.student.grid: steps (q) must be in 1..8 (M), got 9" in err
    err = _train(["recipes:mlcd", "--recipes.inference-steps", "9", *out], capsys)
    assert "each must be in 1..8" in err


def test_a_run_refused_after_the_model_loaded_leaves_no_empty_folder(capsys, tiny_sd_dir, tmp_path):
    """A flag found wrong once the model is there (LoRA target names) used to leave the run's folder
    behind, created and empty; a folder that was there before stays, with what it holds."""
    argv = [
        "recipes:mlcd",
        "--recipes.model.path",
        str(tiny_sd_dir),
        "--recipes.data.prompts",
        str(MINIATURE_PROMPTS),
    ]
    argv += ["--recipes.student.target-modules"]
    err = _train([*argv, "to_qq", "--recipes.runtime.out-dir", str(tmp_path / "run")], capsys)
    assert "to_qq matches no Linear/Conv layer" in err and not (tmp_path / "run").exists()
    (tmp_path / "kept").mkdir()
    _train([*argv, "to_qq", "--recipes.runtime.out-dir", str(tmp_path / "kept")], capsys)
    assert (tmp_path / "kept").is_dir()


def test_sample_rejects_bad_steps(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: sample_main(SampleArgs(steps=0)))
    assert exit_info.value.code == 2
    assert "--steps must be >= 1, got 0" in capsys.readouterr().err


def test_real_process_exit_code_and_single_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tlcm.train", "recipes:mlcd", "--recipes.model.path", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error: model folder") and "--recipes.model.path DIR" in proc.stderr


PRESET_LINE = (
    "unknown recipe recipes:UNKNOWN; presets: "
    "recipes:tlcm-full, recipes:tlcm-paper, recipes:mlcd, recipes:lcd, "
)


@pytest.mark.parametrize("argv", [["recipes:UNKNOWN", "--help"], ["recipes:UNKNOWN"]])
def test_unknown_preset_names_the_presets_even_with_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: train_cli(argv))
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.err.strip().startswith(f"error: {PRESET_LINE}") and captured.out == ""


def test_unknown_preset_with_help_in_a_real_process():
    proc = subprocess.run(
        [sys.executable, "-m", "tlcm.train", "recipes:UNKNOWN", "--help"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    presets = ", ".join(f"recipes:{name}" for name in PRESETS)
    assert proc.stderr.strip().splitlines() == [f"error: unknown recipe recipes:UNKNOWN; presets: {presets}"]
    assert presets.startswith(PRESET_LINE.split("presets: ")[1])  # the documented order first


HELP_CHECK = """
import contextlib, io, sys
from tlcm.train import cli as train
from tlcm.evaluate import cli as evaluate
from tlcm.sample import cli as sample
from tlcm.export import cli as export
from tlcm.data.trajectories import cli as trajectories
from tlcm.data.images import main as images
import tyro
from tlcm.latent_lpips.train import TrainArgs
latent_lpips = lambda argv: tyro.cli(TrainArgs, args=argv)  # noqa: E731
helps = [(train, ["-h"]), (train, ["recipes:tlcm-full", "-h"]), (evaluate, ["student", "-h"])]
helps += [(sample, ["-h"]), (export, ["-h"]), (trajectories, ["-h"]), (sample, ["--stpes", "4"])]
helps += [(images, ["-h"]), (latent_lpips, ["-h"])]
for cli, argv in helps:
    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        cli(argv)
print(" ".join(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_help_imports_the_recipe_tree_only():
    """--help (and a misspelled flag) of tlcm.train (its presets, a preset's fields), tlcm.evaluate,
    tlcm.sample, tlcm.export, tlcm.data.trajectories, tlcm.data.images and tlcm.latent_lpips.train
    imports torch (the loss configs need it) but no model library: diffusers, peft, timm,
    transformers and torchvision are imported by the code that trains or loads a model (they took
    --help from ~2 s to ~7 s; ~14 s once)."""
    proc = subprocess.run([sys.executable, "-c", HELP_CHECK], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    loaded = set(proc.stdout.split())
    assert "torch" in loaded and not loaded & {"diffusers", "peft", "timm", "transformers", "torchvision"}


def test_ablations_plot_checks_for_matplotlib_before_importing_torch():
    code = "import ablations.plot, sys; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.stdout.strip() == "False", proc.stderr


@pytest.mark.parametrize("command", ["teacher-table", "student", "compare"])
def test_evaluate_help_documents_every_option_without_raw_markup(command, capsys, monkeypatch):
    import docstring_parser

    from tlcm.evaluate import COMMANDS
    from tlcm.evaluate import cli as evaluate_cli

    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        evaluate_cli([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    function = COMMANDS[command]
    docs = {p.arg_name: p.description for p in docstring_parser.parse(inspect.getdoc(function)).params}
    assert list(docs) == list(inspect.signature(function).parameters)  # every option documented,
    assert all(" ".join(doc.split()) in text for doc in docs.values())  # shown as written
    assert "``" not in text
