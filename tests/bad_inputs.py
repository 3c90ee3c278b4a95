"""Bad inputs of the tlcm command lines and what each prints: ONE table of cases, shared by the test
(tests/test_bad_inputs.py) and docs/reliability.md. Regenerate the doc with
``python tests/bad_inputs.py`` (from the repository root; about 15 s on 2 CPU cores).

A ``Case`` is a bad input (``name``), the entry point it goes through (``cli``: a key of
``ENTRY_POINTS``, run in-process exactly as ``python -m <cli>`` runs it), its arguments and a
fragment of the message it must print. Arguments and the fragment may name ``{tmp}`` (a fresh
folder per case) and ``{tiny}`` (a tiny SD pipeline folder, built once, only when a case names it).
``setup(ws)`` prepares files before the run (``ws.tmp``, ``ws.tiny``) and may return a context
manager, entered around the run (``full_disk``: writes that fail as on a full disk); ``env`` sets
environment variables for the run (WORLD_SIZE, say); ``skip`` returns a reason to skip on this
machine (None: run). A case passes when the run exits with code ``exit_code`` (2) after printing one line
"error: ..." holding the fragment, and no traceback (``one_line=False``: the argument parser's own
multi-line box).

Add a row: append a ``Case`` to ``CASES``, usually through ``train(...)`` / ``sample(...)`` /
``teacher_table(...)`` / ``trajectories(...)``, which add each CLI's harmless ``defaults`` (tlcm.train
runs write to ``{tmp}/run``, so a ``setup`` can put a checkpoint there to test resuming, e.g. a
truncated one). Cases that reach the model should use ``{tiny}`` and a one-step run (``TINY_RUN``).
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import random
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tlcm.errors import run_cli
from tlcm.toy import MINIATURE_PROMPTS

DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"


def _train(argv: list[str]) -> None:
    from tlcm.train import cli

    cli(argv)


def _sample(argv: list[str]) -> None:
    from tlcm.sample import cli

    cli(argv)


def _evaluate(argv: list[str]) -> None:
    from tlcm.evaluate import cli

    cli(argv)


def _trajectories(argv: list[str]) -> None:
    from tlcm.data.trajectories import cli

    cli(argv)


def _export(argv: list[str]) -> None:
    from tlcm.export import cli

    cli(argv)


def _images(argv: list[str]) -> None:
    from tlcm.data.images import main

    main(argv)


def _latent_lpips(argv: list[str]) -> None:
    import tyro

    from tlcm.latent_lpips.train import TrainArgs, main

    main(tyro.cli(TrainArgs, args=argv))


def _ablations(argv: list[str]) -> None:
    import tyro

    from ablations.run import Args, main

    main(tyro.cli(Args, args=argv))


def _zoo(argv: list[str]) -> None:
    import tyro

    from ablations.zoo import Args, main

    main(tyro.cli(Args, args=argv))


def _disc_probe(argv: list[str]) -> None:
    import tyro

    from ablations.disc_probe import Args, main

    main(tyro.cli(Args, args=argv))


ENTRY_POINTS: dict[str, Callable[[list[str]], None]] = {
    "tlcm.train": _train,
    "tlcm.sample": _sample,
    "tlcm.evaluate": _evaluate,
    "tlcm.data.trajectories": _trajectories,
    "tlcm.export": _export,
    "tlcm.data.images": _images,
    "tlcm.latent_lpips.train": _latent_lpips,
    "ablations.run": _ablations,
    "ablations.zoo": _zoo,
    "ablations.disc_probe": _disc_probe,
}
"""python -m NAME -> the same entry point, in-process (argv without the program name)."""


def build_tiny_pipeline(folder: Path) -> Path:
    """The tiny random SD pipeline (tlcm/toy/tiny.py) saved in ``folder`` (once)."""
    if not (folder / "model_index.json").is_file():
        from tlcm.toy.tiny import tiny_sd_pipeline

        tiny_sd_pipeline().save_pretrained(folder)
    return folder


@dataclass
class Workspace:
    """What a case's setup and arguments may use: ``tmp`` (fresh per case) and ``tiny`` (lazy)."""

    tmp: Path
    tiny_root: Path

    @property
    def tiny(self) -> Path:
        return build_tiny_pipeline(self.tiny_root)

    def format(self, text: str) -> str:
        """``text`` with {tmp} and {tiny} replaced (the tiny pipeline is built only when named)."""
        text = text.replace("{tmp}", str(self.tmp))
        return text.replace("{tiny}", str(self.tiny)) if "{tiny}" in text else text


@dataclass(frozen=True)
class Case:
    """One bad input: see the module docstring."""

    name: str
    cli: str
    args: tuple[str, ...]
    expect: str
    setup: Callable[[Workspace], object] | None = None
    env: dict[str, str] = field(default_factory=dict)
    skip: Callable[[], str | None] | None = None
    one_line: bool = True
    xfail: str | None = None
    """Why this case does not pass yet (the test expects a failure; the doc shows what happens)."""
    exit_code: int = 2
    """The exit code expected (2: bad input; a TLCMError subclass may differ, e.g. 3)."""
    defaults: tuple[str, ...] = ()
    """Flag / value pairs added after the leading subcommand unless ``args`` names the flag (e.g.
    an output folder under {tmp}); not shown in the doc."""

    def argv(self) -> list[str]:
        """The arguments run: subcommand(s), the defaults ``args`` does not override, the rest."""
        head = 0
        while head < len(self.args) and not self.args[head].startswith("--"):
            head += 1
        pairs = zip(self.defaults[::2], self.defaults[1::2], strict=True)
        extra = [x for flag, value in pairs if flag not in self.args for x in (flag, value)]
        return [*self.args[:head], *extra, *self.args[head:]]


# ---- setups ---------------------------------------------------------------------------------------


def write(relative: str, data: str | bytes, *more: str | bytes) -> Callable[[Workspace], None]:
    """A setup writing ``data`` to ``tmp/relative`` (parents created); ``more``: further
    (relative, data) pairs."""
    pairs = [(relative, data), *zip(more[::2], more[1::2], strict=True)]

    def setup(ws: Workspace) -> None:
        for name, content in pairs:
            path = ws.tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content if isinstance(content, bytes) else content.encode())

    return setup


def mkdir(relative: str) -> Callable[[Workspace], None]:
    return lambda ws: (ws.tmp / relative).mkdir(parents=True, exist_ok=True)


def model_folder(index: str | None, components: tuple[str, ...] = ()) -> Callable[[Workspace], None]:
    """A setup making ``tmp/model`` with model_index.json = ``index`` (None: none) and empty
    component folders."""

    def setup(ws: Workspace) -> None:
        (ws.tmp / "model").mkdir()
        if index is not None:
            (ws.tmp / "model" / "model_index.json").write_text(index)
        for c in components:
            (ws.tmp / "model" / c).mkdir()

    return setup


def damaged_tiny(component: str = "unet", how: str = "random") -> Callable[[Workspace], None]:
    """A setup copying the tiny pipeline to ``tmp/model`` and damaging ``component``'s safetensors
    weights: "random" overwrites 64 KiB of tensor data (header intact: it loads, with NaN/inf
    values), "truncate" cuts the file in half."""

    def setup(ws: Workspace) -> None:
        shutil.copytree(ws.tiny, ws.tmp / "model")
        (weights,) = (ws.tmp / "model" / component).glob("*.safetensors")
        data = bytearray(weights.read_bytes())
        if how == "truncate":
            data = data[: len(data) // 2]
        else:
            start = 8 + int.from_bytes(data[:8], "little") + 4096  # past the JSON header
            data[start : start + 65536] = random.Random(0).randbytes(65536)
        weights.write_bytes(bytes(data))

    return setup


def tiny_without(relative: str) -> Callable[[Workspace], None]:
    """A setup copying the tiny pipeline to ``tmp/model`` and deleting ``relative`` (a file or a
    folder's files: the folder stays, empty)."""

    def setup(ws: Workspace) -> None:
        shutil.copytree(ws.tiny, ws.tmp / "model")
        target = ws.tmp / "model" / relative
        for file in target.iterdir() if target.is_dir() else [target]:
            file.unlink()

    return setup


def trained_run(
    folder: str, *args: str, then: Callable[[Path], None] | None = None
) -> Callable[[Workspace], None]:
    """A setup training recipes:mlcd on the tiny pipeline for one step into ``tmp/folder``
    (``args``: more flags, e.g. more steps) through the CLI, then ``then(run folder)`` (damage it)."""

    def setup(ws: Workspace) -> None:
        run = ws.tmp / folder
        argv = ["recipes:mlcd", "--recipes.model.path", str(ws.tiny), *TINY_RUN, *MINIATURE_PROMPT_FILE]
        argv += ["--recipes.runtime.out-dir", str(run), "--recipes.runtime.device", "cpu", *args]
        with contextlib.redirect_stderr(io.StringIO()):
            _train(argv)
        if then is not None:
            then(run)

    return setup


def _truncate_every_checkpoint(run: Path) -> None:
    for weights in (run / "checkpoints").glob("step-*/student.safetensors"):
        weights.write_bytes(weights.read_bytes()[:100])


def _pointer(data: bytes) -> Callable[[Path], None]:
    """Overwrite the run's ``checkpoints/latest`` with ``data`` (a power loss, a bad copy)."""
    return lambda run: (run / "checkpoints" / "latest").write_bytes(data)


def _rewrite_weights(path: Path, change: Callable[[str, torch.Tensor], torch.Tensor]) -> None:
    """Rewrite a safetensors file with ``change(name, tensor)`` applied, keeping its header metadata
    (and so its size: the same architecture)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(path, "pt") as f:
        metadata = f.metadata()
    save_file({k: change(k, v) for k, v in load_file(path).items()}, path, metadata=metadata)


def _nan_in_latest(run: Path) -> None:
    """NaN in the latest checkpoint's student weights (a checkpoint from before saves were checked)."""
    folder = run / "checkpoints" / (run / "checkpoints" / "latest").read_text()
    _rewrite_weights(folder / "student.safetensors", lambda k, v: v * float("nan") if "lora_B" in k else v)


def _two_processes(run: Path) -> None:
    """Record that the latest checkpoint was written by a 2-process (torchrun) run."""
    state = run / "checkpoints" / (run / "checkpoints" / "latest").read_text() / "state.json"
    record = json.loads(state.read_text())
    record["run"]["processes"] = 2
    state.write_text(json.dumps(record))


def fine_tuned_tiny(ws: Workspace) -> None:
    """A setup copying the tiny pipeline to ``tmp/model`` with one UNet weight changed by 0.1 %:
    another model of the same architecture, every file the same size."""
    shutil.copytree(ws.tiny, ws.tmp / "model")
    (weights,) = (ws.tmp / "model" / "unet").glob("*.safetensors")
    _rewrite_weights(weights, lambda k, v: v * 1.001 if k.endswith("conv_in.weight") else v)


def both(*setups: Callable[[Workspace], object]) -> Callable[[Workspace], None]:
    """A setup running ``setups`` in order."""
    return lambda ws: [setup(ws) for setup in setups] and None


def _latest_mid_phase(run: Path) -> None:
    """Keep only the periodic checkpoint of step 1 of 2 (as a pre-empted run leaves it)."""
    shutil.rmtree(run / "checkpoints" / "step-0000002")
    (run / "checkpoints" / "latest").write_text("step-0000001")


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _has_gpu() -> str | None:
    return "a CUDA GPU is present" if torch.cuda.is_available() else None


def _unwritable_sys() -> str | None:
    """Skip reason unless /sys refuses new folders (a stand-in for a read-only file system that
    works as root too, where permission bits do not stop writes)."""
    if not Path("/sys").is_dir() or _writable(Path("/sys/tlcm-probe")):
        return "/sys accepts new folders here"
    return None


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir()
    except OSError:
        return False
    folder.rmdir()
    return True


def tiny_config(component: str, file: str = "config.json", **changes: object) -> Callable[[Workspace], None]:
    """A setup copying the tiny pipeline to ``tmp/model`` with ``changes`` written into
    ``component/file`` (e.g. the scheduler's num_train_timesteps)."""

    def setup(ws: Workspace) -> None:
        shutil.copytree(ws.tiny, ws.tmp / "model")
        path = ws.tmp / "model" / component / file
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))

    return setup


def tiny_rebuilt(component: str, **changes: object) -> Callable[[Workspace], None]:
    """A setup copying the tiny pipeline to ``tmp/model`` with ``component`` (a diffusers or a
    transformers model) replaced by random weights of its config with ``changes`` (e.g. a VAE of
    8 latent channels): a folder that loads, with parts that do not fit each other."""

    def setup(ws: Workspace) -> None:
        import diffusers
        import transformers

        shutil.copytree(ws.tiny, ws.tmp / "model")
        folder = ws.tmp / "model" / component
        config = {**json.loads((folder / "config.json").read_text()), **changes}
        if "architectures" in config:
            cls = getattr(transformers, config["architectures"][0])
            model = cls(cls.config_class(**config))
        else:
            model = getattr(diffusers, config["_class_name"]).from_config(config)
        shutil.rmtree(folder)
        model.save_pretrained(folder)

    return setup


def placeholder_model(pipeline: str) -> Callable[[Workspace], None]:
    """A setup making ``tmp/model``: a ``pipeline`` folder of placeholder files (its family's
    components, tokenizers with a vocabulary file) that passes every check needing no weights and
    fails to load: for checks that must come before the model loads."""

    def setup(ws: Workspace) -> None:
        from tlcm.models.families import FAMILIES

        components = FAMILIES[pipeline].components
        index = {"_class_name": pipeline, **{c: ["diffusers", "Placeholder"] for c in components}}
        write("model/model_index.json", json.dumps(index))(ws)
        for c in components:
            write(f"model/{c}/{'vocab' if c.startswith('tokenizer') else 'config'}.json", "{}")(ws)

    return setup


def foreign_lora(relative: str) -> Callable[[Workspace], None]:
    """A setup writing ``tmp/relative``: a LoRA of an SD3 transformer (diffusers format), which an SD
    pipeline's load_lora_weights loads nothing of (with a mere warning)."""

    def setup(ws: Workspace) -> None:
        from safetensors.torch import save_file

        name = "transformer.transformer_blocks.0.attn.to_q"
        tensors = {f"{name}.lora_A.weight": torch.zeros(4, 32), f"{name}.lora_B.weight": torch.zeros(32, 4)}
        save_file(tensors, ws.tmp / relative)

    return setup


@contextlib.contextmanager
def full_disk(fragment: str):
    """While active, writing a file whose name holds ``fragment`` fails as on a full disk: ENOSPC
    from ``Path.write_text``, safetensors' own SafetensorError from its writer."""
    from unittest import mock

    from safetensors import SafetensorError

    import tlcm.files

    write_text, save_file = Path.write_text, tlcm.files.save_file

    def failing_write_text(path: Path, *args, **kwargs):
        if fragment in path.name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return write_text(path, *args, **kwargs)

    def failing_save_file(tensors, path, *args, **kwargs):
        if fragment in Path(path).name:
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return save_file(tensors, path, *args, **kwargs)

    with mock.patch.object(Path, "write_text", failing_write_text):
        with mock.patch.object(tlcm.files, "save_file", failing_save_file):
            yield


def then_full_disk(setup: Callable[[Workspace], object], fragment: str) -> Callable[[Workspace], object]:
    """A setup running ``setup``, then returning ``full_disk(fragment)`` for the run."""
    return lambda ws: setup(ws) or full_disk(fragment)


# ---- the table ------------------------------------------------------------------------------------

MLCD = "--recipes.phases.mlcd"
TRAIN_DEFAULTS = ("--recipes.runtime.out-dir", "{tmp}/run", "--recipes.runtime.device", "cpu")
"""tlcm.train cases: the run folder under {tmp}, the CPU (unless the case sets them)."""
MINIATURE_PROMPT_FILE = ("--recipes.data.prompts", str(MINIATURE_PROMPTS))
"""And, on a model other than the miniature without images: its prompts, as a file (unset, a run of
another model is refused: it would train on the miniature's digit prompts)."""


def train(name: str, *args: str, expect: str, **kw) -> Case:
    """A tlcm.train case on the cheap recipes:mlcd preset."""
    prompts = () if "--recipes.data.images" in args else MINIATURE_PROMPT_FILE
    return Case(name, "tlcm.train", ("recipes:mlcd", *args), expect, defaults=TRAIN_DEFAULTS + prompts, **kw)


def sample(name: str, *args: str, expect: str, **kw) -> Case:
    defaults = ("--out", "{tmp}/grid.png", "--device", "cpu")
    return Case(name, "tlcm.sample", args, expect, defaults=defaults, **kw)


def teacher_table(name: str, *args: str, expect: str, **kw) -> Case:
    defaults = ("--out", "{tmp}/t.json")
    return Case(name, "tlcm.evaluate", ("teacher-table", *args), expect, defaults=defaults, **kw)


def trajectories(name: str, *args: str, expect: str, **kw) -> Case:
    defaults = ("--out", "{tmp}/cache", "--device", "cpu")
    return Case(name, "tlcm.data.trajectories", args, expect, defaults=defaults, **kw)


PROMPTS = "--recipes.data.prompts"
STALE_EMBEDDINGS = (
    '{"format": "tlcm-embeddings", "version": 1, "fingerprint": {"pipeline": "StableDiffusionXLPipeline"}, '
    '"dtype": "float32", "chunks": {}}'
)
"""An embedding cache manifest (tlcm/data/embeddings.py) written with another (SDXL) model."""
MALFORMED_EMBEDDINGS = STALE_EMBEDDINGS.replace('{"pipeline": "StableDiffusionXLPipeline"}', '"text_encoder"')
"""An embedding cache manifest whose fingerprint is no JSON object."""
MALFORMED_TRAJECTORIES = json.dumps(
    {"format": "tlcm-trajectories", "version": 1, "num_milestones": 8, "skip": 20, "num_prompts": 40}
    | {"dtype": ["float16"], "grid": [], "edges": [], "shards": []}
)
"""A trajectory cache manifest (tlcm/data/trajectories.py) whose dtype is a list."""
TINY_RUN = (f"{MLCD}.steps", "1", f"{MLCD}.batch-size", "1", "--recipes.runtime.no-sample-grid")
"""For cases that reach the model: should the check be missing, the run is one step, not 300."""
CASES: list[Case] = [
    # -- tlcm.train: the argument parser (tyro) itself
    Case(
        "misspelled recipe field",
        "tlcm.train",
        ("recipes:mlcd", f"{MLCD}.stpes", "3"),
        f"unknown flag(s) {MLCD}.stpes (did you mean {MLCD}.steps?)",
    ),
    Case(
        "misspelled loss field of the preset",
        "tlcm.train",
        ("recipes:tlcm-full", f"{MLCD}.losses.mlcd.ema-decy", "0.5"),
        f"did you mean {MLCD}.losses.mlcd.ema-decay?",
    ),
    Case("stray value", "tlcm.train", ("recipes:mlcd", "3"), "unexpected argument(s) 3"),
    Case(
        "--import of a module that is not there",
        "tlcm.train",
        ("--import", "nowhere_recipes", "recipes:mlcd"),
        "--import nowhere_recipes: no module named 'nowhere_recipes'",
    ),
    Case(
        "--import of a recipe file that is not there",
        "tlcm.train",
        ("--import", "{tmp}/my_recipes.py", "recipes:mlcd"),
        "--import {tmp}/my_recipes.py: no such file",
    ),
    # -- prompt files
    train(
        "another model, no prompts or images (the miniature's digit prompts would be its data)",
        "--recipes.model.path",
        "{tiny}",
        PROMPTS,
        "None",
        expect="--recipes.model.path {tiny} would train on the miniature's 40 handwritten-digit prompts "
        "(--recipes.data.prompts unset): pass --recipes.data.prompts FILE",
    ),
    train("prompt file missing", PROMPTS, "{tmp}/nope.txt", expect="nope.txt does not exist"),
    Case(
        "a preset on a model of another family (tlcm-full-flux on an SD folder)",
        "tlcm.train",
        ("recipes:tlcm-full-flux", "--recipes.model.path", "{tiny}"),
        "--recipes.model.path {tiny} is a StableDiffusionPipeline folder, but this recipe's values are for "
        "a FluxPipeline (--recipes.model.pipeline): use the preset of its family",
        defaults=TRAIN_DEFAULTS + MINIATURE_PROMPT_FILE,
    ),
    Case(
        "reward model folder missing (checked before the phases before it train)",
        "tlcm.train",
        (
            "recipes:tlcm-paper",
            "--recipes.phases.preference.losses.preference.reward",
            "pickscore",
            "--recipes.phases.preference.losses.preference.clip-folder",
            "{tmp}/pickscore",
        ),  # fmt: skip
        "--recipes.phases.preference.losses.preference.clip-folder {tmp}/pickscore: no config.json there "
        "(a local transformers CLIP folder)",
        defaults=TRAIN_DEFAULTS,
    ),
    train(
        "prompt file is a folder",
        PROMPTS,
        "{tmp}/p.txt",
        expect="is a folder, not a file",
        setup=mkdir("p.txt"),
    ),
    train(
        "prompt file not UTF-8",
        PROMPTS,
        "{tmp}/p.txt",
        expect="p.txt:2 is not UTF-8 text (byte 0xe9",
        setup=write("p.txt", b"a digit\ncaf\xe9 digit\n"),
    ),
    train(
        "prompt file of blank lines",
        PROMPTS,
        "{tmp}/p.txt",
        expect="holds no prompts",
        setup=write("p.txt", "\n \n"),
    ),
    train(
        "prompt file with another extension",
        PROMPTS,
        "{tmp}/p.csv",
        expect="must end in .txt or .jsonl",
        setup=write("p.csv", "a digit\n"),
    ),
    train(
        '.jsonl "prompt" not a string',
        PROMPTS,
        "{tmp}/p.jsonl",
        expect='p.jsonl:2: expected a JSON object with a non-empty string "prompt" field, found "prompt": 42',
        setup=write("p.jsonl", '{"prompt": "a digit"}\n{"prompt": 42}\n'),
    ),
    train(
        '.jsonl line without "prompt"',
        PROMPTS,
        "{tmp}/p.jsonl",
        expect='p.jsonl:1: expected a JSON object with a non-empty string "prompt" field, found no "prompt"',
        setup=write("p.jsonl", '{"text": "a digit"}\n'),
    ),
    train(
        ".jsonl line not an object",
        PROMPTS,
        "{tmp}/p.jsonl",
        expect="found a JSON array",
        setup=write("p.jsonl", '["a digit"]\n'),
    ),
    train(
        ".jsonl line not JSON",
        PROMPTS,
        "{tmp}/p.jsonl",
        expect="p.jsonl:1: not JSON",
        setup=write("p.jsonl", "{oops\n"),
    ),
    train(  # the tokenizer would fail with a TypeError at the first encode
        ".jsonl prompt with a lone surrogate escape",
        PROMPTS,
        "{tmp}/p.jsonl",
        *TINY_RUN,
        expect='p.jsonl:1: the "prompt" holds a lone surrogate "\\ud800" (character 8), which is no text',
        setup=write("p.jsonl", '{"prompt": "a digit \\ud800"}\n'),
    ),
    train(
        "prompt file of zero-width characters only",
        PROMPTS,
        "{tmp}/p.txt",
        *TINY_RUN,
        expect="holds no prompts",
        setup=write("p.txt", "\u200b\n\u2060 \ufeff\u200d\n"),
    ),
    # -- model folders
    train(
        "model folder missing",
        "--recipes.model.path",
        "{tmp}/absent",
        expect="does not exist: pass a local diffusers folder (--recipes.model.path DIR)",
    ),
    train(
        "model path is a file",
        "--recipes.model.path",
        "{tmp}/m",
        expect="is a file, not a folder",
        setup=write("m", ""),
    ),
    train(
        "model folder without model_index.json",
        "--recipes.model.path",
        "{tmp}/model",
        expect="not a diffusers pipeline folder (no model_index.json)",
        setup=model_folder(None),
    ),
    train(
        "model_index.json not JSON",
        "--recipes.model.path",
        "{tmp}/model",
        expect="model_index.json is not valid JSON",
        setup=model_folder("{oops"),
    ),
    train(
        "model_index.json a JSON array",
        "--recipes.model.path",
        "{tmp}/model",
        expect='holds an array, not a JSON object with "_class_name"',
        setup=model_folder('["StableDiffusionPipeline"]'),
    ),
    train(
        "model_index.json _class_name a list",
        "--recipes.model.path",
        "{tmp}/model",
        expect='"_class_name" must be a pipeline class name (a string), found ["StableDiffusionPipeline"]',
        setup=model_folder('{"_class_name": ["StableDiffusionPipeline"]}'),
    ),
    train(
        "unsupported pipeline class",
        "--recipes.model.path",
        "{tmp}/model",
        expect="holds a KandinskyPipeline; supported: StableDiffusionPipeline, StableDiffusionXLPipeline, "
        "StableDiffusion3Pipeline, FluxPipeline",
        setup=model_folder('{"_class_name": "KandinskyPipeline"}'),
    ),
    train(
        "model component folder missing",
        "--recipes.model.path",
        "{tmp}/model",
        expect="lacks the component folder(s) text_encoder, tokenizer",
        setup=model_folder('{"_class_name": "StableDiffusionPipeline"}', ("unet", "vae", "scheduler")),
    ),
    train(
        "model component folder empty",
        "--recipes.model.path",
        "{tmp}/model",
        expect="component folder {tmp}/model/vae is empty",
        setup=tiny_without("vae"),
    ),
    train(  # transformers would build an empty CLIP tokenizer and fail at the first prompt
        "tokenizer without vocabulary",
        "--recipes.model.path",
        "{tmp}/model",
        expect="{tmp}/model/tokenizer holds no vocabulary (none of tokenizer.json, vocab.json, spiece.model)",
        setup=tiny_without("tokenizer/tokenizer.json"),
    ),
    train(
        "UNet weights corrupted (random bytes: NaN/inf)",
        "--recipes.model.path",
        "{tmp}/model",
        expect="unet/diffusion_pytorch_model.safetensors: the unet weights hold NaN/inf values",
        setup=damaged_tiny("unet", "random"),
    ),
    train(
        "UNet weights truncated",
        "--recipes.model.path",
        "{tmp}/model",
        expect="could not load the diffusers folder",
        setup=damaged_tiny("unet", "truncate"),
    ),
    train(  # checked against a hard-coded T = 1000, MLCD trained on 10 timesteps (loss ~1e-22)
        "scheduler of 10 timesteps (MLCD's skip beyond T/M)",
        "--recipes.model.path",
        "{tmp}/model",
        *TINY_RUN,
        expect="mlcd.losses.mlcd.skip must be in 1..1 (T/M), got 20 (T = 10, from {tmp}/model/scheduler)",
        setup=tiny_config("scheduler", "scheduler_config.json", num_train_timesteps=10),
    ),
    train(  # trained on 1 x 1 latents
        "resolution not a multiple of the latent grid",
        "--recipes.model.resolution",
        "7",
        *TINY_RUN,
        expect="--recipes.model.resolution 7: ",
    ),
    train(
        "resolution 0",
        "--recipes.model.resolution",
        "0",
        *TINY_RUN,
        expect="takes images whose side is a multiple of 8 pixels (VAE scale factor 4 x 2 for its unet): use "
        "e.g. 8 or 16",
    ),
    train(  # only the phase-end sample grid (after training) would fail
        "VAE of 8 latent channels (the UNet takes 4)",
        "--recipes.model.path",
        "{tmp}/model",
        *TINY_RUN,
        expect="{tmp}/model/vae makes 8-channel latents but {tmp}/model/unet takes 4-channel ones",
        setup=tiny_rebuilt("vae", latent_channels=8),
    ),
    train(
        "text encoder wider than the UNet's cross-attention",
        "--recipes.model.path",
        "{tmp}/model",
        *TINY_RUN,
        expect="the text encoder(s) make 48-wide prompt embeddings but {tmp}/model/unet attends to 32-wide",
        setup=tiny_rebuilt("text_encoder", hidden_size=48),
    ),
    train(  # refused only at the export, after training
        "kohya export of an SD3 model",
        "--recipes.model.path",
        "{tmp}/model",
        "--recipes.runtime.export-formats",
        "kohya",
        expect="--recipes.runtime.export-formats kohya: the kohya LoRA format is for SD1.5 / SDXL UNets, "
        "this base model is sd3",
        setup=placeholder_model("StableDiffusion3Pipeline"),
    ),
    # -- phases
    train("steps < 1", f"{MLCD}.steps", "0", expect=f"{MLCD}.steps must be >= 1, got 0"),
    train(
        "lr NaN", f"{MLCD}.lr", "nan", expect=f"{MLCD}.lr must be a finite number > 0 (e.g. 1e-4), got nan"
    ),
    train(
        "lr inf", f"{MLCD}.lr", "inf", expect=f"{MLCD}.lr must be a finite number > 0 (e.g. 1e-4), got inf"
    ),
    train("lr 0", f"{MLCD}.lr", "0", expect=f"{MLCD}.lr must be a finite number > 0"),
    train(
        "negative weight decay",
        f"{MLCD}.weight-decay",
        "-0.1",
        expect=f"{MLCD}.weight-decay must be a finite number >= 0",
    ),
    train(
        "negative max grad norm", f"{MLCD}.max-grad-norm", "-1", expect=f"{MLCD}.max-grad-norm must be >= 0"
    ),
    train("grad-accum < 1", f"{MLCD}.grad-accum", "0", expect=f"{MLCD}.grad-accum must be >= 1"),
    train(
        "warm-up as long as the phase",
        f"{MLCD}.lr-warmup-steps",
        "300",
        expect=f"{MLCD}.lr-warmup-steps must be in 0..299",
    ),
    train(
        "batch size < 1", f"{MLCD}.batch-size", "0", expect=f"{MLCD}.batch-size must be in 1..65536, got 0"
    ),
    train(  # 8 TB of prompt indices at the first step
        "batch size 1e12",
        f"{MLCD}.steps",
        "1",
        f"{MLCD}.batch-size",
        "1000000000000",
        expect=f"{MLCD}.batch-size must be in 1..65536, got 1000000000000",
    ),
    train(
        "batch not divisible by grad-accum",
        f"{MLCD}.batch-size",
        "10",
        f"{MLCD}.grad-accum",
        "4",
        expect=f"batch-size 10 does not split into 4 equal micro-batches ({MLCD}.grad-accum 4): use 8 or 12",
    ),
    train(
        "batch not divisible by processes x grad-accum (torchrun)",
        f"{MLCD}.batch-size",
        "10",
        f"{MLCD}.grad-accum",
        "2",
        expect=f"does not split into 4 equal micro-batches (2 processes x {MLCD}.grad-accum 2): use 8 or 12",
        env={"WORLD_SIZE": "2"},
    ),
    train(
        "batch smaller than processes x grad-accum (torchrun)",
        f"{MLCD}.batch-size",
        "2",
        expect=f"{MLCD}.batch-size 2 is smaller than 4 processes x {MLCD}.grad-accum 1 = 4 micro-batches",
        env={"WORLD_SIZE": "4"},
    ),
    train("WORLD_SIZE not a number", expect="WORLD_SIZE='two' in the environment", env={"WORLD_SIZE": "two"}),
    train(
        "loss weight NaN",
        f"{MLCD}.losses.mlcd.weight",
        "nan",
        expect=f"{MLCD}.losses.mlcd.weight must be a finite number",
    ),
    train(
        "milestones out of range",
        f"{MLCD}.losses.mlcd.skip",
        "0",
        expect=f"{MLCD}.losses.mlcd.skip must be in 1..",
    ),
    train(  # a loss config's field names its flag, and the scheduler note only comes when T matters
        "EMA decay out of range",
        f"{MLCD}.losses.mlcd.ema-decay",
        "2",
        expect=f"error: {MLCD}.losses.mlcd.ema-decay must be in [0, 1), got 2.0",
    ),
    train(
        "cached teacher states without a cache",
        f"{MLCD}.losses.mlcd.states",
        "cache",
        expect=f'{MLCD}.losses.mlcd.states "cache" needs --recipes.data.trajectory-cache DIR',
    ),
    train(
        "student states from real data without images",
        "--recipes.student.grid.backward-simulation",
        "data",
        expect='--recipes.student.grid.backward-simulation "data" (the student\'s states: real images '
        "noised to its grid) needs --recipes.data.images DIR",
    ),
    # -- student
    train(
        "LoRA rank 0",
        "--recipes.student.lora-rank",
        "0",
        expect="--recipes.student.lora-rank must be >= 1, got 0",
    ),
    train(
        "LoRA rank negative",
        "--recipes.student.lora-rank",
        "-4",
        expect="--recipes.student.lora-rank must be >= 1",
    ),
    train(
        "LoRA alpha 0", "--recipes.student.lora-alpha", "0", expect="--recipes.student.lora-alpha must be > 0"
    ),
    train(
        "unknown LoRA target module",
        "--recipes.model.path",
        "{tiny}",
        "--recipes.student.target-modules",
        "to_qq",
        expect="--recipes.student.target-modules: to_qq matches no Linear/Conv layer",
    ),
    train(  # peft alone trains to_q and silently skips to_kk: a run of one tiny step if unchecked
        "misspelled LoRA target among valid ones",
        "--recipes.model.path",
        "{tiny}",
        "--recipes.student.target-modules",
        "to_q",
        "to_kk",
        *TINY_RUN,
        expect="--recipes.student.target-modules: to_kk matches no Linear/Conv layer",
    ),
    Case(
        "unknown recipe preset (with --help)",
        "tlcm.train",
        ("recipes:tlcm-ful", "--help"),
        "unknown recipe recipes:tlcm-ful (did you mean recipes:tlcm-full?); presets: recipes:tlcm-full",
    ),
    train(
        "tracker whose package is missing",
        "--recipes.runtime.trackers",
        "wandb",
        skip=lambda: "wandb is installed here" if _importable("wandb") else None,
        expect="--recipes.runtime.trackers wandb: the wandb package is not installed",
    ),
    # -- checkpoints: resume and init-from
    train(
        "every checkpoint of the run damaged",
        "--recipes.model.path",
        "{tiny}",
        *TINY_RUN,
        setup=trained_run("run", then=_truncate_every_checkpoint),
        expect="no loadable checkpoint in {tmp}/run/checkpoints",
    ),
    train(
        "rerun of a finished run with more steps",
        "--recipes.model.path",
        "{tiny}",
        *TINY_RUN,
        f"{MLCD}.steps",
        "2",
        setup=trained_run("run"),
        expect="was trained with phases mlcd (1 steps) but this recipe has mlcd (2 steps)",
    ),
    train(
        "rerun with another lr and seed",
        "--recipes.model.path",
        "{tiny}",
        *TINY_RUN,
        f"{MLCD}.lr",
        "2e-3",
        "--recipes.runtime.seed",
        "1",
        setup=trained_run("run"),
        expect="phases.mlcd.lr 0.001 -> 0.002; runtime.seed 0 -> 1 (checkpoint -> this run); resuming would "
        "mix two trainings",
    ),
    train(
        "rerun with another base model of the same architecture",
        "--recipes.model.path",
        "{tmp}/model",
        *TINY_RUN,
        setup=both(trained_run("run"), fine_tuned_tiny),
        expect="base model {tiny} -> {tmp}/model (fingerprint",
    ),
    train(
        "rerun with another process count",
        "--recipes.model.path",
        "{tiny}",
        *TINY_RUN,
        setup=trained_run("run", then=_two_processes),
        expect="processes 2 -> 1 (checkpoint -> this run)",
    ),
    train(
        "latest pointer empty (resumes from the newest complete checkpoint)",
        "--recipes.model.path",
        "{tiny}",
        *TINY_RUN,
        setup=trained_run("run", then=_pointer(b"")),
        expect="checkpoint checkpoints/latest is empty (damaged, missing or unsound); using "
        "{tmp}/run/checkpoints/step-0000001 instead",
        exit_code=0,
        one_line=False,
    ),
    train(
        "latest pointer not UTF-8 (resumes from the newest complete checkpoint)",
        "--recipes.model.path",
        "{tiny}",
        *TINY_RUN,
        setup=trained_run("run", then=_pointer(b"step-\xff")),
        expect="checkpoints/latest is not UTF-8 text",
        exit_code=0,
        one_line=False,
    ),
    train(
        "latest checkpoint holds NaN weights (resumes from the previous one)",
        "--recipes.model.path",
        "{tiny}",
        *TINY_RUN,
        f"{MLCD}.steps",
        "2",
        "--recipes.runtime.checkpoint-every",
        "1",
        setup=trained_run(
            "run", f"{MLCD}.steps", "2", "--recipes.runtime.checkpoint-every", "1", then=_nan_in_latest
        ),
        expect="holds NaN/inf (damaged, missing or unsound); using {tmp}/run/checkpoints/step-0000001",
        exit_code=0,
        one_line=False,
    ),
    train(
        "lr 1e30 with on-nonfinite skip (weights blow up, finite)",
        "--recipes.model.path",
        "{tiny}",
        *TINY_RUN,
        f"{MLCD}.steps",
        "3",
        f"{MLCD}.lr",
        "1e30",
        "--recipes.runtime.on-nonfinite",
        "skip",
        expect="the student diverged in phase 'mlcd': after step 1 a weight has magnitude",
        exit_code=3,
        one_line=False,  # the progress bar of step 1 comes first
    ),
    train(
        "init-from a run that stopped mid-phase",
        "--recipes.model.path",
        "{tiny}",
        *TINY_RUN,
        "--recipes.student.init-from",
        "{tmp}/stage1",
        setup=trained_run(
            "stage1", f"{MLCD}.steps", "2", "--recipes.runtime.checkpoint-every", "1", then=_latest_mid_phase
        ),
        expect="stopped mid-phase (phase 0, step 1): finish that run first",
    ),
    train(
        "init-from a run with another LoRA alpha",
        "--recipes.model.path",
        "{tiny}",
        *TINY_RUN,
        "--recipes.student.init-from",
        "{tmp}/stage1",
        setup=trained_run("stage1", "--recipes.student.lora-alpha", "8"),
        expect="lora_alpha 8.0 != 16.0",
    ),
    train(
        "init-from folder missing",
        "--recipes.student.init-from",
        "{tmp}/stage1",
        expect="--recipes.student.init-from {tmp}/stage1 is not a folder",
    ),
    # -- model, data, runtime
    train(
        "guidance scale NaN",
        "--recipes.model.guidance-scale",
        "nan",
        expect="--recipes.model.guidance-scale must be",
    ),
    train(  # a NaN loss at the first step, which named the lr
        "guidance scale 1e38",
        "--recipes.model.guidance-scale",
        "1e38",
        *TINY_RUN,
        expect="--recipes.model.guidance-scale must be a finite number in 0..100 (typical: 1 to 15)",
    ),
    train(
        "trajectory cache missing",
        "--recipes.data.trajectory-cache",
        "{tmp}/cache",
        expect="--recipes.data.trajectory-cache {tmp}/cache is not a folder: build it with python -m",
    ),
    train(
        "embedding cache a file",
        "--recipes.data.embedding-cache",
        "{tmp}/emb",
        setup=write("emb", ""),
        expect="--recipes.data.embedding-cache {tmp}/emb is a file, not a folder",
    ),
    train(
        "embedding cache of another text encoder",
        "--recipes.model.path",
        "{tiny}",
        "--recipes.data.embedding-cache",
        "{tmp}/emb",
        *TINY_RUN,
        setup=write("emb/manifest.json", STALE_EMBEDDINGS),
        expect="embedding cache {tmp}/emb: made with another text encoder or tokenizer (pipeline: "
        "StableDiffusionXLPipeline in the cache, StableDiffusionPipeline in this model); delete {tmp}/emb",
    ),
    train(  # an AttributeError / TypeError where the manifest is read
        "embedding cache manifest malformed",
        "--recipes.model.path",
        "{tiny}",
        "--recipes.data.embedding-cache",
        "{tmp}/emb",
        *TINY_RUN,
        setup=write("emb/manifest.json", MALFORMED_EMBEDDINGS),
        expect="embedding cache {tmp}/emb: unreadable manifest.json (ValueError: manifest.json: "
        """'fingerprint' must hold a JSON object, found "text_encoder")""",
    ),
    train(  # safetensors' writer fails with its own SafetensorError
        "embedding cache in a folder that cannot be written (read-only file system)",
        "--recipes.model.path",
        "{tiny}",
        "--recipes.data.embedding-cache",
        "/sys",
        *TINY_RUN,
        expect="embedding cache /sys: cannot write (PermissionError: [Errno 13] Permission denied",
        skip=_unwritable_sys,
    ),
    train(
        "embedding cache on a full disk (simulated)",
        "--recipes.model.path",
        "{tiny}",
        "--recipes.data.embedding-cache",
        "{tmp}/emb",
        *TINY_RUN,
        expect="embedding cache {tmp}/emb: cannot write (OSError: [Errno 28] No space left on device",
        setup=lambda ws: full_disk("chunk-"),
    ),
    train(
        "trajectory cache manifest malformed",
        "--recipes.model.path",
        "{tiny}",
        "--recipes.data.trajectory-cache",
        "{tmp}/cache",
        *TINY_RUN,
        expect="unreadable manifest (ValueError: manifest.json: 'dtype' must hold a JSON string",
        setup=write("cache/manifest.json", MALFORMED_TRAJECTORIES),
    ),
    train(
        "disk full at the export (simulated)",
        "--recipes.model.path",
        "{tiny}",
        *TINY_RUN,
        expect="cannot write the student to {tmp}/run/student: No space left on device "
        "({tmp}/run/student/pytorch_lora_weights.safetensors): free space there",
        setup=lambda ws: full_disk("pytorch_lora_weights"),
        one_line=False,  # the progress bar of the step comes first
    ),
    train(
        "disk full at the model card after the export (simulated)",
        "--recipes.model.path",
        "{tiny}",
        *TINY_RUN,
        expect="cannot write the model card to {tmp}/run/student/README.md: No space left on device",
        setup=lambda ws: full_disk("README.md"),
        one_line=False,  # the progress bar of the step comes first
    ),
    train(
        "disk full on the rerun: metrics.jsonl rewritten (simulated)",
        "--recipes.model.path",
        "{tiny}",
        *TINY_RUN,
        f"{MLCD}.steps",
        "2",
        "--recipes.runtime.checkpoint-every",
        "1",
        expect="cannot write the metrics to {tmp}/run/metrics.jsonl: No space left on device",
        setup=then_full_disk(
            trained_run(
                "run", f"{MLCD}.steps", "2", "--recipes.runtime.checkpoint-every", "1", then=_latest_mid_phase
            ),
            ".metrics.jsonl",
        ),
    ),
    train(
        "disk full during a checkpoint save (simulated)",
        "--recipes.model.path",
        "{tiny}",
        *TINY_RUN,
        expect="No space left on device",
        setup=lambda ws: full_disk("student.safetensors"),
        one_line=False,  # the progress bar of the step comes first
    ),
    train(
        "device cuda without a GPU",
        "--recipes.runtime.device",
        "cuda",
        expect="--recipes.runtime.device cuda: torch sees no CUDA GPU",
        skip=_has_gpu,
    ),
    train(
        "device not a device", "--recipes.runtime.device", "banana", expect="'banana' is not a torch device"
    ),
    train(
        "memory budget <= 0",
        "--recipes.runtime.memory-budget-gib",
        "0",
        expect="--recipes.runtime.memory-budget-gib must be > 0 (GiB), got 0.0",
    ),
    train(
        "checkpoint-every < 0",
        "--recipes.runtime.checkpoint-every",
        "-1",
        expect="checkpoint-every must be >= 0",
    ),
    train("seed beyond 64 bits", "--recipes.runtime.seed", str(2**64), expect="--recipes.runtime.seed 1844"),
    train(
        "log-every < 1", "--recipes.runtime.log-every", "0", expect="--recipes.runtime.log-every must be >= 1"
    ),
    train(
        "unknown compile backend",
        "--recipes.runtime.compile-backend",
        "inducter",
        expect="--recipes.runtime.compile-backend 'inducter' is not a torch.compile backend: use inductor",
    ),
    train(
        "max-weight-abs 0",
        "--recipes.runtime.max-weight-abs",
        "0",
        expect="--recipes.runtime.max-weight-abs must be > 0 (inf disables the divergence guard)",
    ),
    train(
        "max-skipped-fraction > 1",
        "--recipes.runtime.max-skipped-fraction",
        "2",
        expect="--recipes.runtime.max-skipped-fraction must be in 0..1, got 2.0",
    ),
    train(
        "out-dir an existing file",
        "--recipes.runtime.out-dir",
        "{tmp}/f",
        expect="--recipes.runtime.out-dir {tmp}/f: {tmp}/f is an existing file, not a folder",
        setup=write("f", ""),
    ),
    train(
        "out-dir inside a file",
        "--recipes.runtime.out-dir",
        "{tmp}/f/run",
        expect="{tmp}/f is an existing file, not a folder",
        setup=write("f", ""),
    ),
    train(
        "out-dir not writable",
        "--recipes.runtime.out-dir",
        "/sys/tlcm-run",
        expect="--recipes.runtime.out-dir /sys/tlcm-run: it is not writable",
        skip=_unwritable_sys,
    ),
    train(
        "inference steps > M",
        "--recipes.inference-steps",
        "9",
        expect="--recipes.inference-steps: each must be in 1..8",
    ),
    train("inference steps 0", "--recipes.inference-steps", "1", "0", expect="each must be in 1..8"),
    # -- tlcm.sample
    sample("--steps < 1", "--steps", "0", expect="--steps must be >= 1, got 0"),
    sample("teacher steps >= schedule timesteps", "--steps", "1000", expect="use --steps 1..999"),
    sample("--num-per-prompt 0", "--num-per-prompt", "0", expect="--num-per-prompt must be >= 1"),
    sample("empty prompt", "--prompt", " ", expect="--prompt #1 of 1 is empty: give it text or drop it"),
    sample(
        "--out without an image extension",
        "--out",
        "{tmp}/grid",
        expect="must end in .png, .jpg, .jpeg or .webp",
    ),
    sample(
        "--guidance-scale NaN", "--guidance-scale", "nan", expect="--guidance-scale must be a finite number"
    ),
    sample("--seed beyond 64 bits", "--seed", str(2**64), expect="use a seed with |seed| < 2**63"),
    sample("--device not a device", "--device", "banana", expect="--device 'banana' is not a torch device"),
    sample("--model missing", "--model", "{tmp}/absent", expect="(--model DIR)"),
    sample(
        "--student folder missing", "--student", "{tmp}/run", expect="--student {tmp}/run is not a folder"
    ),
    sample(
        "--student one checkpoint of a run",
        "--student",
        "{tmp}/run/checkpoints/step-0000001",
        expect="is one checkpoint of the run {tmp}/run: pass the run folder",
        setup=mkdir("run/checkpoints/step-0000001"),
    ),
    sample("--gamma without --student", "--gamma", "0.5", expect="--gamma sets the student's sampler"),
    sample(
        "--guidance-scale with --student",
        "--student",
        "{tmp}",
        "--guidance-scale",
        "3",
        expect="--guidance-scale is the teacher's: a student samples without CFG",
    ),
    # -- tlcm.evaluate
    teacher_table(
        "teacher-table --steps 0", "--steps", "0", "4", expect="--steps must be one or more step counts >= 1"
    ),
    teacher_table(
        "teacher-table --steps >= schedule timesteps", "--steps", "1000", expect="use step counts in 1..999"
    ),
    teacher_table(
        "teacher-table --samples-per-digit 0",
        "--samples-per-digit",
        "0",
        expect="--samples-per-digit must be >= 1",
    ),
    teacher_table(
        "teacher-table --out not .json", "--out", "{tmp}/t.md", expect="--out {tmp}/t.md must end in .json"
    ),
    teacher_table(
        "teacher-table --assets missing", "--assets", "{tmp}", expect="--assets {tmp} lacks digit_classifier"
    ),
    teacher_table(
        "teacher-table --guidance-scales NaN", "--guidance-scales", "nan", expect="--guidance-scales must be"
    ),
    Case(
        "evaluate student: run folder missing",
        "tlcm.evaluate",
        ("student", "--run", "{tmp}/run"),
        "--run {tmp}/run is not a folder",
    ),
    Case(
        "evaluate compare: no eval.json",
        "tlcm.evaluate",
        ("compare", "--run", "{tmp}"),
        "eval.json is missing: (re)write it with `python -m tlcm.evaluate student --run {tmp}`",
    ),
    Case(
        "evaluate compare: teacher table not JSON",
        "tlcm.evaluate",
        ("compare", "--run", "{tmp}", "--teacher", "{tmp}/t.json"),
        "{tmp}/t.json is not valid JSON",
        setup=write("eval.json", '[{"steps": 1, "alignment": 0.9, "fd": 5.0}]', "t.json", "{"),
    ),
    Case(  # replaced the 500-prompt reference every table reads with a 10-prompt trial
        "evaluate teacher-table: a trial over the committed table",
        "tlcm.evaluate",
        ("teacher-table", "--samples-per-digit", "1", "--out", "benchmarks/results/teacher_table.json"),
        "with --samples-per-digit changed this table is another one: pass --out FILE.json",
    ),
    Case(  # a UNet student beside the flow teacher, labelled DDIM+CFG
        "evaluate compare: the teacher table of another model",
        "tlcm.evaluate",
        ("compare", "--run", "{tmp}", "--teacher", "benchmarks/results/teacher_table_flow.json"),
        "scores the model tlcm/toy/assets/miniature-sd3",
        setup=write(
            "eval.json",
            '[{"steps": 1, "prompts": 200, "alignment": 0.9, "fd": 5.0}]',
            "checkpoints/step-00000001/state.json",
            '{"run": {"recipe": {"model": {"path": "tlcm/toy/assets/miniature-sd"}}}}',
        ),
    ),
    Case(  # loaded nothing and scored the base model as the student
        "evaluate generate: --student a LoRA of another architecture",
        "tlcm.evaluate",
        ("generate", *"--model {tiny} --prompts {tmp}/p.txt --out {tmp}/gen --device cpu".split())
        + ("--student", "{tmp}/sd3.safetensors"),
        "--student {tmp}/sd3.safetensors: none of its 1 LoRA layers match a layer of {tiny} (--model)",
        setup=both(write("p.txt", "a digit\n"), foreign_lora("sd3.safetensors")),
    ),
    # -- tlcm.data.trajectories
    trajectories(
        "--samples-per-prompt 0", "--samples-per-prompt", "0", expect="--samples-per-prompt must be >= 1"
    ),
    trajectories("--skip > T/M", "--skip", "500", expect="--skip 500 must be in 1..125"),
    trajectories(
        "--max-sequence-length 0",
        "--max-sequence-length",
        "0",
        expect="--max-sequence-length must be >= 1, got 0",
    ),
    trajectories("--prompts missing", "--prompts", "{tmp}/p.txt", expect="file to --prompts"),
    trajectories(
        "--prompts not UTF-8",
        "--prompts",
        "{tmp}/p.txt",
        expect="is not UTF-8 text",
        setup=write("p.txt", b"\xff\n"),
    ),
    trajectories(
        "--out an existing file", "--out", "{tmp}/f", expect="is an existing file", setup=write("f", "")
    ),
    trajectories("--model missing", "--model", "{tmp}/absent", expect="(--model DIR)"),
    # -- tlcm.export
    Case(
        "export: one checkpoint of a run",
        "tlcm.export",
        ("{tmp}/run/checkpoints/step-0000001",),
        "RUN {tmp}/run/checkpoints/step-0000001 is one checkpoint of the run {tmp}/run",
        setup=mkdir("run/checkpoints/step-0000001"),
    ),
    # -- tlcm.data.images
    Case(
        "images: --n below 1",
        "tlcm.data.images",
        ("--write-miniature", "{tmp}/digits", "--n", "-3"),
        "--n must be >= 1, got -3",
    ),
    Case(
        "images: --per-shard 0",
        "tlcm.data.images",
        ("--write-miniature", "{tmp}/digits", "--layout", "shards", "--per-shard", "0"),
        "--per-shard must be >= 1, got 0",
    ),
    # -- tlcm.latent_lpips.train
    Case(
        "latent LPIPS: --lr below 0",
        "tlcm.latent_lpips.train",
        ("--lr", "-1"),
        "--lr must be a positive number",
    ),
    Case(
        "latent LPIPS: --images a file",
        "tlcm.latent_lpips.train",
        ("--images", "{tmp}/f.png"),
        "--images {tmp}/f.png is not a folder",
        setup=write("f.png", ""),
    ),
    Case(
        "latent LPIPS: --out not .safetensors",
        "tlcm.latent_lpips.train",
        ("--out", "{tmp}/ll"),
        "--out {tmp}/ll must end in .safetensors",
    ),
    # -- ablations
    Case("ablations: --jobs 0 (ran forever)", "ablations.run", ("--jobs", "0"), "--jobs must be >= 1, got 0"),
    Case("method zoo: --jobs 0", "ablations.zoo", ("--jobs", "0"), "--jobs must be >= 1, got 0"),
    Case(
        "ablations: a --steps trial into the published table",
        "ablations.run",
        ("--steps", "5", "--variants", "mds-states-l2"),
        "--steps 5 trains a quick trial: pass --table and --runs other than docs/ablations.md",
    ),
    Case("ablations: a negative seed", "ablations.run", ("--seeds", "-1"), "--seeds must be >= 0, got -1"),
    Case(
        "method zoo: a --budget trial into the published tables",
        "ablations.zoo",
        ("--budget", "2000", "--dry-run"),
        "--budget 2000 trains a quick trial: pass --table and --runs other than docs/zoo.md",
    ),
    Case(
        "disc probe: --steps 2 (the table has three columns)",
        "ablations.disc_probe",
        ("--run", "{tmp}/run", "--steps", "2"),
        "--steps must be >= 3",
    ),
    Case(
        "disc probe: --held-out as large as --real",
        "ablations.disc_probe",
        ("--run", "{tmp}/run", "--held-out", "64", "--real", "64"),
        "--held-out (64) must be below --real (64)",
    ),
]
"""Every bad input, in table order (docs/reliability.md)."""


@dataclass
class Outcome:
    """What a case's run did: exit code (0: returned), stderr, and an escaped exception's traceback."""

    code: int | None
    stderr: str
    traceback: str | None = None


def run_case(case: Case, ws: Workspace) -> Outcome:
    """Set up and run ``case`` in-process through its real entry point (stdout, stderr captured)."""
    context = case.setup(ws) if case.setup is not None else None
    if not isinstance(context, contextlib.AbstractContextManager):
        context = contextlib.nullcontext()
    argv = [ws.format(a) for a in case.argv()]
    saved = {k: os.environ.get(k) for k in case.env}
    os.environ.update(case.env)
    err, out = io.StringIO(), io.StringIO()
    program, sys.argv[0] = sys.argv[0], case.cli  # the program the parser's messages name
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), context:
            try:
                run_cli(lambda: ENTRY_POINTS[case.cli](argv))
                return Outcome(0, err.getvalue())
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
                return Outcome(code, err.getvalue())
            except Exception:  # the bug this table exists to catch: report it, do not hide it
                return Outcome(1, err.getvalue(), traceback.format_exc())
    finally:
        sys.argv[0] = program
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def problems(case: Case, outcome: Outcome, ws: Workspace) -> list[str]:
    """Why ``outcome`` is not a proper refusal of ``case`` (empty: it is)."""
    found = []
    text = " ".join(outcome.stderr.split())
    if outcome.traceback or "Traceback" in outcome.stderr:
        found.append(f"a traceback: {(outcome.traceback or outcome.stderr).strip().splitlines()[-1]}")
    if outcome.code != case.exit_code:
        found.append(f"exit code {outcome.code}, not {case.exit_code}")
    if ws.format(case.expect) not in text:
        found.append(f"message lacks {ws.format(case.expect)!r}: {text!r}")
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    if case.one_line and (len(lines) != 1 or not lines[0].startswith("error: ")):
        found.append(f"not one 'error: ...' line: {outcome.stderr!r}")
    return found


def _shell(arg: str) -> str:
    """``arg`` as typed in a shell (quoted only when empty or holding spaces: {tmp} stays readable)."""
    return shlex.quote(arg) if not arg or any(c.isspace() for c in arg) else arg


def _cell(text: str, limit: int = 400) -> str:
    """One markdown cell: whitespace and the parser's box rules collapsed, | escaped, cut at ``limit``."""
    text = " ".join(w for w in text.split() if not set(w) <= set("-─│╭╮╰╯"))
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def write_doc(path: Path = DOC) -> list[str]:
    """Run every case and write the markdown table to ``path``; returns the failures found."""
    rows, failures = [], []
    repo = f"{DOC.parents[1]}/"
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        for i, case in enumerate(CASES):
            reason = case.skip() if case.skip else None
            command = " ".join(
                [*(f"{k}={v}" for k, v in case.env.items()), "python -m", case.cli, *map(_shell, case.args)]
            )
            if reason:
                rows.append(f"| {_cell(case.name)} | `{_cell(command)}` | (not run here: {reason}) | - |")
                continue
            tmp = root / f"case-{i:03d}"
            tmp.mkdir()
            ws = Workspace(tmp, root / "tiny-sd")
            start = time.perf_counter()
            outcome = run_case(case, ws)
            bad = problems(case, outcome, ws)
            message = outcome.stderr
            if outcome.traceback:
                message += " (traceback: " + outcome.traceback.strip().splitlines()[-1] + ")"
            message = message.replace(str(tmp), "{tmp}").replace(str(root / "tiny-sd"), "{tiny}")
            message = message.replace(repo, "")
            if bad and not case.xfail:
                failures.append(f"{case.name}: {'; '.join(bad)}")
            note = f" (*known gap*: {case.xfail})" if case.xfail else ""
            rows.append(
                f"| {_cell(case.name)} | `{_cell(command)}` | {_cell(message)}{note} | {outcome.code} |"
            )
            print(f"{time.perf_counter() - start:5.1f} s  {outcome.code}  {case.name}", file=sys.stderr)
    header = [
        "# Reliability: bad inputs",
        "",
        "Generated by `python tests/bad_inputs.py` from the table of cases in tests/bad_inputs.py (the",
        "same table tests/test_bad_inputs.py runs); do not edit by hand. Each command runs in-process",
        "through the real entry point. `{tmp}` is a fresh scratch folder per case, `{tiny}` a tiny random",
        "SD pipeline; tlcm.train cases also pass `--recipes.runtime.out-dir {tmp}/run",
        "--recipes.runtime.device cpu`, tlcm.sample `--out {tmp}/grid.png --device cpu`, teacher-table",
        "`--out {tmp}/t.json`, tlcm.data.trajectories `--out {tmp}/cache --device cpu` (unless the case",
        "sets them). A bad input ends with one line `error: what, where, how to fix` and exit code 2 (3:",
        "a non-finite loss; the argument parser's own errors print its usage box, shortened here), before",
        "the model loads wherever the check needs no weights. Exit code 0 rows are damage a run recovers",
        "from: one line says what was wrong and what it used instead, then the run goes on (its progress",
        "output follows). Rows marked *(simulated)* inject the fault into the file writers in-process (a",
        "full disk: ENOSPC, or safetensors' own error). Rows marked *known gap* are not handled yet.",
        "",
        "| bad input | command or field | message printed | exit code |",
        "|---|---|---|---|",
    ]
    path.write_text("\n".join(header + rows) + "\n")
    return failures


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.path.insert(0, str(DOC.parents[1]))  # ablations/ imports from the repository root, as under pytest
    failed = write_doc()
    print(f"wrote {DOC} ({len(CASES)} cases)", file=sys.stderr)
    for line in failed:
        print(f"FAILED {line}", file=sys.stderr)
    sys.exit(1 if failed else 0)
