"""Walkthrough 11 (a model family added from outside tlcm/): ``register_family`` checks a family
and refuses a taken pipeline name (report 1); ``--import MODULE`` works for every CLI, and a run's
"Sample it:" line carries it (report 2); the unsupported-pipeline refusal says how to add a family
and does not send a run's user to a flag they did not pass (report 8)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tlcm.user_modules as user_modules
from tlcm.config import ModelConfig
from tlcm.errors import TLCMError
from tlcm.models.families import FAMILIES, register_family
from tlcm.models.families.sd import StableDiffusion
from tlcm.models.folders import check_model_folder
from tlcm.summary import run_summary

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ROOT / "tlcm" / "toy" / "assets" / "prompts.txt"

FAMILY_MODULE = '''"""A renamed copy of the SD family: the whole route of a family of one's own."""
from diffusers import StableDiffusionPipeline

from tlcm.models.families import register_family
from tlcm.models.families.sd import StableDiffusion


class RenamedSDPipeline(StableDiffusionPipeline):
    pass


class RenamedSD(StableDiffusion):
    name = "renamed-sd"
    tag = "renamed-sd"
    pipeline_name = "RenamedSDPipeline"

    @property
    def pipeline(self):
        return RenamedSDPipeline


register_family(RenamedSD())
'''


@pytest.fixture
def registry(monkeypatch):
    """FAMILIES and the --import record restored after the test."""
    monkeypatch.setattr(user_modules, "IMPORTED", dict(user_modules.IMPORTED))
    monkeypatch.setattr(user_modules, "_GIVEN", dict(user_modules._GIVEN))
    saved = dict(FAMILIES)
    yield FAMILIES
    FAMILIES.clear()
    FAMILIES.update(saved)


class _Renamed(StableDiffusion):
    name = "w11-renamed"
    tag = "w11-renamed"
    pipeline_name = "W11RenamedPipeline"


# ---- report 1: register_family ------------------------------------------------------------------


def test_register_family_adds_a_checked_family_and_the_shipped_ones_went_through_it(registry):
    assert register_family(_Renamed()) is not None and isinstance(registry["W11RenamedPipeline"], _Renamed)

    @register_family
    class Decorated(_Renamed):
        name = tag = "w11-decorated"
        pipeline_name = "W11DecoratedPipeline"

    assert isinstance(registry["W11DecoratedPipeline"], Decorated)
    assert list(registry)[:4] == [
        "StableDiffusionPipeline",
        "StableDiffusionXLPipeline",
        "StableDiffusion3Pipeline",
        "FluxPipeline",
    ]


def test_register_family_refuses_a_taken_pipeline_and_a_family_missing_what_it_must_define(registry):
    class Clash(_Renamed):
        name = tag = "w11-clash"
        pipeline_name = "StableDiffusionPipeline"

    with pytest.raises(TLCMError) as err:
        register_family(Clash())
    message = str(err.value)
    assert "\n" not in message and "pipeline_name 'StableDiffusionPipeline' is already" in message
    assert "tlcm.models.families.sd.StableDiffusion's" in message and "StableDiffusionPipeline" in registry
    assert isinstance(registry["StableDiffusionPipeline"], StableDiffusion)

    class SameName(_Renamed):
        pipeline_name = "W11OtherPipeline"  # name "w11-renamed", once _Renamed is registered

    register_family(_Renamed())
    with pytest.raises(TLCMError, match=r"name 'w11-renamed' is already .*_Renamed's"):
        register_family(SameName())

    from tlcm.models.families.base import Family

    class NoMethods(Family):
        name = tag = "w11-bare"
        pipeline_name = "W11BarePipeline"
        components = ("unet", "vae", "scheduler", "text_encoder", "tokenizer")

    with pytest.raises(TLCMError, match=r"lacks encode, feature_channels, features, forward, lora_targets"):
        register_family(NoMethods)

    class NoVae(_Renamed):
        name = tag = "w11-novae"
        pipeline_name = "W11NoVaePipeline"
        components = ("unet", "scheduler", "text_encoder", "tokenizer")

    with pytest.raises(TLCMError, match=r"components \+ optional_components lack vae"):
        register_family(NoVae())

    class NoTargets(_Renamed):
        name = tag = "w11-notargets"
        pipeline_name = "W11NoTargetsPipeline"
        lora_targets = ()

    with pytest.raises(TLCMError, match=r"lora_targets must be a non-empty tuple"):
        register_family(NoTargets())
    with pytest.raises(TLCMError, match=r"not a tlcm.models.families.Family subclass"):
        register_family(object())
    assert not {"W11NoVaePipeline", "W11NoTargetsPipeline", "W11BarePipeline"} & set(registry)


# ---- report 2: --import in every CLI, and in the printed follow-up commands -----------------------

MARK_MODULE = "import sys\nsys.modules[__name__].SEEN = True\n"


@pytest.mark.parametrize(
    "module, argv",
    [
        ("tlcm.sample", ["--help"]),
        ("tlcm.export", ["--help"]),
        ("tlcm.data.trajectories", ["--help"]),
        ("tlcm.evaluate", ["--help"]),
        ("tlcm.evaluate", ["student", "--help"]),
        ("tlcm.evaluate", ["teacher-table", "--help"]),
        ("tlcm.evaluate", ["compare", "--help"]),
        ("tlcm.evaluate", ["generate", "--help"]),
        ("tlcm.evaluate", ["score", "--help"]),
        ("tlcm.evaluate", ["reward-thresholds", "--help"]),
        ("tlcm.train", ["--help"]),
    ],
)
def test_every_cli_takes_import(module, argv, tmp_path, monkeypatch, registry, capsys):
    """``--import MODULE`` (anywhere in the line, also as --import=FILE.py) is imported before the
    flags are parsed, by every entry point: tyro never sees it."""
    import importlib

    name = f"w11_mark_{module.replace('.', '_')}_{len(argv)}_{argv[0].strip('-')}".replace("-", "_")
    (tmp_path / f"{name}.py").write_text(MARK_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    cli = importlib.import_module(module).cli
    with pytest.raises(SystemExit) as done:
        cli([*argv, "--import", name])
    assert done.value.code in (0, None), capsys.readouterr()
    assert sys.modules[name].SEEN and name in user_modules.IMPORTED
    file = f"{name}_file"
    (tmp_path / f"{file}.py").write_text(MARK_MODULE)
    monkeypatch.delitem(sys.modules, file, raising=False)
    with pytest.raises(SystemExit):
        cli([f"--import={tmp_path / file}.py", *argv])
    assert sys.modules[file].SEEN and file in user_modules.IMPORTED


def test_the_sample_it_line_carries_the_runs_imports(tmp_path, registry):
    run = tmp_path / "run"
    run.mkdir()
    plain = run_summary(run, ModelConfig(), 3.0, None)
    assert "--import" not in plain
    user_modules.IMPORTED.update({"my_family": 0, "my_recipes": 1})
    user_modules._GIVEN.update({"my_recipes": "some dir/my_recipes.py"})
    text = run_summary(run, ModelConfig(), 3.0, None, sharded=True)
    sample = next(line for line in text.splitlines() if line.startswith("Sample it:"))
    assert sample.startswith(
        "Sample it: python -m tlcm.sample --import my_family --import 'some dir/my_recipes.py' "
    )
    assert "python -m tlcm.evaluate --import my_family --import 'some dir/my_recipes.py' student" in text


# ---- report 8: the unsupported-pipeline refusal ---------------------------------------------------


def test_an_unsupported_pipeline_says_how_to_add_a_family_and_whence_the_folder_came(tmp_path):
    folder = tmp_path / "pixart"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "PixArtAlphaPipeline"}')
    with pytest.raises(TLCMError) as err:
        check_model_folder(folder, "--model")
    flag = str(err.value)
    assert "holds a PixArtAlphaPipeline; supported: StableDiffusionPipeline" in flag
    assert "pass one to --model, or a family of your own: register_family(MyFamily()) in your module" in flag
    assert "then --import it" in flag
    with pytest.raises(TLCMError) as err:
        check_model_folder(folder, "--model", run=tmp_path / "run")
    run = str(err.value)
    assert "pass one to" not in run and f"{tmp_path / 'run'} was trained on it" in run
    assert "pass the --import MODULE of that training run" in run and "register_family" in run


def test_a_run_records_its_imports_and_a_reader_without_them_is_told_which(
    registry, tiny_sd_dir, tmp_path, monkeypatch
):
    """A run stores its --import modules (a .py file by its absolute path) in its checkpoints' run
    record; reading the run in a process that lacks its family names exactly those flags. They are
    named, never imported from the record (a run folder from elsewhere must not run code)."""
    from engine_helpers import small_recipe

    from tlcm.engine import Trainer
    from tlcm.resume import trained_imports

    monkeypatch.setattr(sys, "path", list(sys.path))
    module = tmp_path / "w11 recorded family.py"  # a space: the flag is quoted
    module.write_text("IMPORTED_BY_THE_TEST = True\n")
    monkeypatch.chdir(tmp_path)  # given relative to the working folder: recorded absolute
    user_modules.import_modules(["--import", module.name, "--import", "json"])
    recorded = [str(module.resolve()), "json"]
    assert user_modules.recorded_imports() == recorded
    Trainer(small_recipe(tiny_sd_dir, tmp_path / "run", steps=1)).run()
    assert trained_imports(tmp_path / "run") == recorded
    assert trained_imports(tmp_path) == []  # no checkpoint: nothing recorded
    folder = tmp_path / "pixart"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "PixArtAlphaPipeline"}')
    with pytest.raises(TLCMError) as err:
        check_model_folder(folder, "--model", tmp_path / "run", trained_imports(tmp_path / "run"))
    flags = f"--import '{module.resolve()}' --import json"
    assert f"{tmp_path / 'run'} was trained with {flags}: pass the same to this command" in str(err.value)


# ---- the whole route: a family of one's own, trained, then sampled --------------------------------


def _python(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_a_family_of_ones_own_trains_and_samples_with_import(tiny_sd_dir, tmp_path):
    """A renamed SD family registered by a module of the test's own: trained 2 steps with
    ``tlcm.train --import``, then sampled with the run's own "Sample it:" command; without the
    --import, sample says which run named the folder and that its --import is missing."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "renamed_family.py").write_text(FAMILY_MODULE)
    model = work / "tiny-renamed"
    shutil.copytree(tiny_sd_dir, model)
    index = json.loads((model / "model_index.json").read_text())
    (model / "model_index.json").write_text(json.dumps({**index, "_class_name": "RenamedSDPipeline"}))
    train = _python(
        [
            "-m", "tlcm.train", "--import", "renamed_family", "recipes:mlcd",
            "--recipes.model.path", str(model), "--recipes.phases.mlcd.steps", "2",
            "--recipes.runtime.no-sample-grid", "--recipes.runtime.out-dir", "run",
            "--recipes.runtime.device", "cpu", "--recipes.data.prompts", str(PROMPTS),
        ],
        work,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    line = next(x for x in train.stdout.splitlines() if x.startswith("Sample it: "))
    assert line.startswith("Sample it: python -m tlcm.sample --import renamed_family --student run ")
    command = line.removeprefix("Sample it: python ").split(' --prompt "')[0].split()
    sample = _python([*command, "--num-per-prompt", "1", "--steps", "2", "--device", "cpu"], work)
    assert sample.returncode == 0, sample.stderr[-3000:]
    assert (work / "run" / "samples.png").is_file()
    bare = [a for a in command if a not in ("--import", "renamed_family")]
    refused = _python([*bare, "--steps", "2", "--device", "cpu"], work)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "holds a RenamedSDPipeline" in refused.stderr and "pass one to --model" not in refused.stderr
    said = " ".join(refused.stderr.split())  # the run recorded its --import: named in the refusal
    assert "run was trained with --import renamed_family: pass the same to this command" in said
