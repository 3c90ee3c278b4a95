"""Unit tests of the fourteenth red-team round, area eval (tests/mutants/redteam14_eval.py): which
images a metric sees with which prompt and noise, which reference statistics a FID reads, which
sampler settings a score is computed and recorded with, and which column holds which number."""

from __future__ import annotations

import contextlib
import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

import tlcm.eval.pipeline  # noqa: F401  (imports tlcm.models.base before a test patches check_model_folder)
from tlcm.errors import TLCMError

PROMPTS = ["a red cube", "a blue ball", "a cat", "a dog"]


# ---- FID statistics (tlcm/eval/fid.py) ----------------------------------------------------------


class _MeanColour(torch.nn.Module):
    """A stand-in for the FID Inception: uint8 (B, 3, H, W) -> the mean colour (B, 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().mean((2, 3)) * self.scale


def _stored_pngs(folder: Path, colours) -> list[Path]:
    """Uniform 16 px PNGs stored without compression: every file has the same size."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, colour in enumerate(colours):
        files.append(folder / f"{i:03d}.png")
        Image.new("RGB", (16, 16), colour).save(files[-1], compress_level=0)
    return files


def test_reference_statistics_of_one_folder_are_not_served_for_another_with_the_same_file_names(tmp_path):
    """Two reference folders whose files share names and sizes (COCO val2017/ and a copy of other
    images under the same names) are two sets: the second is measured, not read from the cache of
    the first (a FID against the wrong reference), also with the same modification times (copies
    made with rsync -a / cp -p keep them)."""
    import os

    from tlcm.eval.fid import image_stats

    a = _stored_pngs(tmp_path / "a", [(10, 20, 30), (200, 0, 50), (0, 90, 250)])
    b = _stored_pngs(tmp_path / "b", [(250, 250, 250), (5, 5, 5), (120, 60, 30)])
    assert [f.stat().st_size for f in a] == [f.stat().st_size for f in b]
    for x, y in zip(a, b, strict=True):
        os.utime(y, ns=(x.stat().st_atime_ns, x.stat().st_mtime_ns))
    net, cache = _MeanColour(), tmp_path / "cache"
    first = image_stats(net, a, 2, cache)
    second = image_stats(net, b, 2, cache)
    torch.testing.assert_close(second.sum, image_stats(net, b, 2, None).sum)
    assert not torch.allclose(first.sum, second.sum)


# ---- generation (tlcm/eval/generate.py) ---------------------------------------------------------


def _generate_args(tmp_path: Path, **kw):
    from tlcm.eval.generate import GenerateArgs

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    return GenerateArgs(model=tmp_path / "model", prompts=prompts, out=tmp_path / "out", device="cpu", **kw)


@pytest.fixture
def no_model_check(monkeypatch):
    import tlcm.models.folders as folders

    monkeypatch.setattr(folders, "check_model_folder", lambda *args: None)


@pytest.mark.parametrize(
    ("field", "old", "new", "key"),
    [
        ("resolution", 32, 64, "resolution"),
        ("num_prompts", None, 2, "num_prompts"),
        ("guidance_scale", 8.0, 3.0, "guidance_scale"),
        ("scheduler", "ddim", "euler", "sampler"),
    ],
)
def test_generate_refuses_to_resume_a_folder_made_with_another_setting(
    tmp_path, no_model_check, field, old, new, key
):
    """A folder holding images of one --resolution / --num-prompts / --guidance-scale / --scheduler is
    not resumed with another (images of two sizes, two prompt subsets or two samplers in one
    folder): refused before any model loads, naming the setting."""
    from tlcm.eval.generate import generate, settings

    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(out / "images" / "00000.png")
    (out / "meta.json").write_text(json.dumps(settings(_generate_args(tmp_path, **{field: old}), 25)))
    with pytest.raises(TLCMError, match=rf"other settings \({key}\)"):
        generate(_generate_args(tmp_path, **{field: new}))


def test_generate_checks_the_settings_of_a_folder_holding_only_a_later_ranks_images(tmp_path, no_model_check):
    """Under torchrun rank 1 may finish first: a folder with image 1 but not image 0 still holds
    images of its settings, and another --seed is refused there too."""
    from tlcm.eval.generate import generate, settings

    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(out / "images" / "00001.png")
    (out / "meta.json").write_text(json.dumps(settings(_generate_args(tmp_path, seed=0), 25)))
    with pytest.raises(TLCMError, match=r"other settings \(seed\)"):
        generate(_generate_args(tmp_path, seed=1))


def test_generate_takes_a_batch_of_one_and_refuses_a_resolution_off_the_8_pixel_grid(
    tmp_path, no_model_check
):
    from tlcm.eval.generate import check_args

    check_args(_generate_args(tmp_path, batch_size=1, resolution=40))
    for bad in (36, 4):
        with pytest.raises(TLCMError, match=f"--resolution must be a multiple of 8, got {bad}"):
            check_args(_generate_args(tmp_path, resolution=bad))
    with pytest.raises(TLCMError, match="--batch-size must be >= 1, got 0"):
        check_args(_generate_args(tmp_path, batch_size=0))


class _RecordingPipe:
    """A diffusers pipeline stand-in: image k of a call is uniform, its red level 40 x the index of
    its prompt in PROMPTS; records (prompts, latents, guidance scale) of every call."""

    vae_scale_factor = 8

    def __init__(self) -> None:
        self.calls = []

    def __call__(
        self, prompt, height, width, num_inference_steps, guidance_scale, generator, latents, output_type
    ):
        self.calls.append((list(prompt), latents.clone(), guidance_scale))
        images = [Image.new("RGB", (height, width), (40 * PROMPTS.index(p), 0, 0)) for p in prompt]
        return SimpleNamespace(images=images)


def _fake_pipeline(monkeypatch) -> _RecordingPipe:
    import tlcm.eval.pipeline as pipeline

    pipe = _RecordingPipe()
    family = SimpleNamespace(latent_shape=lambda pipe, resolution: (4, 2, 2), pipeline_latents=lambda x: x)
    base = SimpleNamespace(
        pipe=pipe, family=family, autocast=contextlib.nullcontext, device="cpu",
        net=SimpleNamespace(dtype=torch.float32),
    )  # fmt: skip
    monkeypatch.setattr(pipeline, "load_pipeline", lambda *args: base)
    return pipe


def _red_levels(out: Path) -> dict[int, int]:
    files = sorted((out / "images").glob("*.png"))
    return {int(f.stem): Image.open(f).getpixel((0, 0))[0] for f in files}


def test_each_image_gets_its_own_prompt_and_noise_on_any_rank_and_on_a_resume(
    tmp_path, no_model_check, monkeypatch
):
    """Image i is made from prompt i and the noise of noise_generator(seed, i), whichever torchrun
    rank makes it and when a resume regenerates it alone (its batch holds other indices than a
    fresh run's): prompts and noise follow the image index, not a position in the batch."""
    from tlcm.eval.generate import generate, noise_generator

    pipe = _fake_pipeline(monkeypatch)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert generate(_generate_args(tmp_path, batch_size=2, seed=3)) == 2
    monkeypatch.setenv("RANK", "0")
    assert generate(_generate_args(tmp_path, batch_size=1, seed=3)) == 2
    out = tmp_path / "out"
    assert _red_levels(out) == {i: 40 * i for i in range(4)}
    (out / "images" / "00003.png").unlink()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert generate(_generate_args(tmp_path, batch_size=4, seed=3)) == 1
    assert _red_levels(out) == {i: 40 * i for i in range(4)}
    made = [
        (i, latents[k])
        for prompts, latents, _ in pipe.calls
        for k, i in enumerate(map(PROMPTS.index, prompts))
    ]
    assert sorted(i for i, _ in made) == [0, 1, 2, 3, 3]
    for i, latents in made:
        torch.testing.assert_close(
            latents, torch.randn((4, 2, 2), generator=noise_generator(3, i)), rtol=0, atol=0
        )
    assert {w for _, _, w in pipe.calls} == {8.0}


# ---- the student's sampler (tlcm/eval/pipeline.py) ----------------------------------------------


@pytest.fixture(scope="module")
def export_dir(tiny_sd_dir, tmp_path_factory):
    from tlcm.config import StudentConfig
    from tlcm.export import export_student
    from tlcm.models.base import BaseModel
    from tlcm.models.student import Student

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("export") / "student"
    export_student(Student(BaseModel.load(tiny_sd_dir), StudentConfig(lora_rank=4)), out)
    return out


def test_gamma_zero_makes_the_students_sampler_ddim_and_a_bare_lora_samples_with_gamma_one(
    tiny_sd_dir, export_dir
):
    """--gamma 0 (DDIM) is a gamma like any other, not "no --gamma"; a bare LoRA file (no scheduler
    config beside it) samples with the documented default gamma 1 (LCM) on --num-milestones."""
    from tlcm.eval.pipeline import load_pipeline
    from tlcm.export import DIFFUSERS_FILE

    ddim = load_pipeline(tiny_sd_dir, "cpu", export_dir, 2, "ddim", 0.0, 8).pipe.scheduler
    assert ddim.config.gamma == 0.0 and ddim.config.first_gamma is None
    bare = load_pipeline(tiny_sd_dir, "cpu", export_dir / DIFFUSERS_FILE, 2, "ddim", None, 4).pipe.scheduler
    assert bare.config.gamma == 1.0 and bare.config.num_milestones == 4


# ---- prompt sets (tlcm/eval/prompts.py) ---------------------------------------------------------


def test_an_hps_folder_is_read_in_file_name_order_whatever_the_listing_order(tmp_path):
    from tlcm.eval.prompts import load_prompt_set

    names = ["paintings", "anime", "photo", "concept-art", "zebra", "b", "a"]
    for name in names:  # created out of name order
        (tmp_path / f"{name}.json").write_text(json.dumps([f"{name} 1", f"{name} 2"]))
    got = [r.prompt for r in load_prompt_set(tmp_path)]
    assert got == [f"{name} {k}" for name in sorted(names) for k in (1, 2)]


def test_a_seeded_subset_keeps_the_files_order(tmp_path):
    from tlcm.eval.prompts import load_prompt_set

    (tmp_path / "p.txt").write_text("\n".join(f"prompt {i}" for i in range(40)) + "\n")
    for seed in range(5):
        got = [int(r.prompt.split()[1]) for r in load_prompt_set(tmp_path / "p.txt", 10, seed)]
        assert got == sorted(random.Random(seed).sample(range(40), 10))


def test_coco_images_come_in_image_id_order_each_with_its_own_file(tmp_path):
    from tlcm.eval.prompts import load_prompt_set

    ids = list(range(100, 140))
    captions = [
        {"id": 5 * i + k, "image_id": i, "caption": f"image {i} caption {k}"} for i in ids for k in (0, 1)
    ]
    data = {
        "images": [{"id": i, "file_name": f"{i:012d}.jpg"} for i in reversed(ids)],
        "annotations": captions,
    }
    (tmp_path / "captions_val2017.json").write_text(json.dumps(data))
    for seed in range(3):
        records = load_prompt_set(tmp_path / "captions_val2017.json", 10, seed)
        got = [int(r.image.split(".")[0]) for r in records]
        assert got == sorted(got) and len(set(got)) == 10
        assert all(r.prompt.startswith(f"image {int(r.image.split('.')[0])} caption") for r in records)


# ---- scoring (tlcm/eval/score.py, tlcm/eval/table.py) -------------------------------------------


def _generated(folder: Path, label: str, prompts: list[str], steps: int = 4) -> Path:
    (folder / "images").mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"label": label, "steps": steps}))
    lines = [json.dumps({"index": i, "prompt": p, "image": None}) for i, p in enumerate(prompts)]
    (folder / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    for i in range(len(prompts)):
        Image.new("RGB", (8, 8), (30 * i, 0, 0)).save(folder / "images" / f"{i:05d}.png")
    return folder


def test_score_checks_each_fid_against_its_own_folder_and_refuses_empty_counts(tmp_path):
    from tlcm.eval.score import ScoreArgs, check_args

    folder = _generated(tmp_path / "run", "m", ["a", "b"])

    def args(**kw):
        return ScoreArgs(images=(folder,), out=tmp_path / "o", device="cpu", **kw)

    with pytest.raises(TLCMError, match="--metrics fid needs --reference"):
        check_args(args(metrics=("fid", "fid-t"), teacher=folder))
    check_args(args(metrics=("fid-t",), teacher=folder))  # FID-T alone needs no real images
    check_args(args(metrics=("fid",), reference=folder, batch_size=1))
    with pytest.raises(TLCMError, match="--batch-size must be >= 1"):
        check_args(args(metrics=("clip",), batch_size=0))
    with pytest.raises(TLCMError, match="--metrics : choose from"):
        check_args(args(metrics=()))


def test_the_grid_shows_the_first_shared_prompts(tmp_path, monkeypatch):
    from tlcm.eval import score as score_mod
    from tlcm.eval.metrics import SCORERS
    from tlcm.eval.score import ScoreArgs

    monkeypatch.setitem(
        SCORERS, "clip", lambda weights, device: lambda images, prompts: torch.zeros(len(images))
    )
    shown = []
    monkeypatch.setattr(score_mod, "image_grid", lambda rows, out, prompts: shown.append((rows, prompts)))
    a = _generated(tmp_path / "a", "A", ["x", "b", "c", "d"])
    b = _generated(tmp_path / "b", "B", ["y", "b", "c", "d"])
    args = ScoreArgs(images=(a, b), out=tmp_path / "o", metrics=("clip",), grid_prompts=2, device="cpu")
    score_mod.score(args)
    ((rows, prompts),) = shown
    assert prompts == ["b", "c"]
    assert [[f.name for f in files] for _, files in rows] == [["00001.png", "00002.png"]] * 2


def test_each_metric_sits_under_its_own_header():
    from tlcm.eval.table import results_markdown

    rows = [{"model": "m", "steps": 4, "fid": 20.0, "clip": 31.0, "aesthetic": 5.5, "imagereward": 0.25}]
    lines = results_markdown(rows, ["imagereward", "aesthetic", "clip", "fid"]).splitlines()
    assert lines[0] == "| model | steps | FID | CLIP score | aesthetic | ImageReward |"
    assert lines[2] == "| m | 4 | 20.00 | 31.00 | 5.50 | 0.250 |"


# ---- toy scores (tlcm/toy/scores.py, tlcm/evaluate.py) ------------------------------------------


class _ToyBase:
    """A stand-in for the miniature in the toy evaluation: encode passes the prompts through,
    decode is the identity on (B, 1, 2, 2) latents."""

    device, latent_shape, schedule = "cpu", (1, 2, 2), 1000

    def encode(self, prompts):
        return prompts, None

    def autocast(self):
        return contextlib.nullcontext()

    def decode(self, latents):
        return latents


def test_a_student_is_scored_on_its_own_grid_and_sampler_and_each_score_in_its_column(monkeypatch):
    """student_scores samples on the student's grid (M = 4 here, not the default 8) with its gamma
    and first-move gamma, puts the alignment and FD each in their own field, and records that
    sampler's gamma and first gamma in each row."""
    import tlcm.toy.scores as scores
    from tlcm.diffusion.milestones import StudentGrid

    seen = []

    def sample(student, schedule, cond, noise, grid, gamma, generator=None, first_gamma=None):
        seen.append((grid, gamma, first_gamma))
        return noise

    monkeypatch.setattr(scores, "sample_latents", sample)
    grid = StudentGrid(num_milestones=4, gamma=0.0, first_gamma=1.0)
    metrics = lambda images, labels: SimpleNamespace(alignment=0.25, fd=7.0)  # noqa: E731
    rows = scores.student_scores(_ToyBase(), "student", (1, 3), 1, metrics, grid)
    expected = {"prompts": 10, "alignment": 0.25, "fd": 7.0, "gamma": 0.0, "first_gamma": 1.0}
    assert rows == [{"steps": n, **expected} for n in (1, 3)]
    assert seen == [(grid.timesteps(n, 1000).tolist(), 0.0, 1.0) for n in (1, 3)]
    assert seen[1][0] != StudentGrid().timesteps(3, 1000).tolist()


def test_teacher_table_rows_hold_each_score_in_its_column(tmp_path, monkeypatch):
    import tlcm.evaluate as evaluate
    import tlcm.models.folders as folders

    monkeypatch.setattr(evaluate, "_check_args", lambda *args: None)
    monkeypatch.setattr(folders, "scheduler_timesteps", lambda model: 1000)
    monkeypatch.setattr(
        evaluate, "_load", lambda *args: SimpleNamespace(schedule=SimpleNamespace(discrete=True))
    )
    monkeypatch.setattr(evaluate, "ToyMetrics", lambda assets: None)
    monkeypatch.setattr(evaluate, "evaluate_toy", lambda *a, **k: SimpleNamespace(alignment=0.25, fd=7.0))
    rows = evaluate.teacher_table((1.5,), (2,), 1, out=tmp_path / "t.json")
    assert [(r["w"], r["steps"], r["alignment"], r["fd"]) for r in rows] == [(1.5, 2, 0.25, 7.0)]
    assert json.loads((tmp_path / "t.json").read_text()) == rows
    assert (tmp_path / "t.md").read_text().splitlines()[2] == "| 1.500 | 2 | 0.250 | 7.000 |"


def test_a_students_gamma_file_records_the_gamma_it_was_scored_with(tmp_path, monkeypatch):
    """evaluate student --gamma 0 of a run trained with gamma 1: eval-gamma0.json's rows say gamma 0."""
    import tlcm.evaluate as evaluate
    from tlcm.diffusion.milestones import StudentGrid
    from tlcm.models.student import Student

    trained = SimpleNamespace(config=SimpleNamespace(grid=StudentGrid()), denoiser=lambda: "student")
    monkeypatch.setattr(Student, "from_run", staticmethod(lambda base, run: trained))
    monkeypatch.setattr(evaluate, "_load", lambda *args: SimpleNamespace())
    monkeypatch.setattr(evaluate, "_check_args", lambda *args: None)
    monkeypatch.setattr(evaluate, "student_model", lambda run, model, msl, note: (run, msl))
    monkeypatch.setattr(evaluate, "ToyMetrics", lambda assets: None)
    grids = []

    def scores(base, denoiser, steps, samples_per_digit, metrics, grid):
        grids.append(grid)
        sampler = {"gamma": grid.gamma, "first_gamma": grid.first_gamma}  # as student_scores records it
        return [{"steps": n, "prompts": 10, "alignment": 0.5, "fd": 1.0, **sampler} for n in steps]

    monkeypatch.setattr(evaluate, "student_scores", scores)
    run = tmp_path / "run"
    run.mkdir()
    rows = evaluate.student(run, steps=(2,), samples_per_digit=1, gamma=0.0)
    assert grids[0].gamma == 0.0 and grids[0].first_gamma is None
    assert [(r["gamma"], r["first_gamma"]) for r in rows] == [(0.0, None)]
    assert json.loads((run / "eval-gamma0.json").read_text()) == rows


def test_an_asset_folder_without_the_reference_statistics_is_refused_before_the_model_loads(
    tmp_path, monkeypatch
):
    import tlcm.models.folders as folders
    from tlcm.evaluate import _check_args

    monkeypatch.setattr(folders, "check_model_folder", lambda *args: None)
    (tmp_path / "digit_classifier.safetensors").write_bytes(b"x")
    with pytest.raises(TLCMError, match=r"lacks reference_stats\.safetensors"):
        _check_args(1, tmp_path / "model", tmp_path, "cpu")
    (tmp_path / "reference_stats.safetensors").write_bytes(b"x")
    _check_args(1, tmp_path / "model", tmp_path, "cpu")
    with pytest.raises(TLCMError, match="--samples-per-digit must be >= 1, got 0"):
        _check_args(0, tmp_path / "model", tmp_path, "cpu")


# ---- open_clip metrics (tlcm/eval/metrics.py) ---------------------------------------------------


class _UnitOpenClip(torch.nn.Module):
    """An open_clip stand-in: every image embeds to (1, 0), every prompt to (0.6, 0.8) (unit)."""

    def encode_image(self, pixels: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return torch.tensor([1.0, 0.0]).expand(pixels.shape[0], 2)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return torch.tensor([0.6, 0.8]).expand(tokens.shape[0], 2)


def test_clip_score_and_hps_load_their_own_file_and_architecture(tmp_path, monkeypatch):
    """--weights.clip (a file) is built as --weights.clip-arch, --weights.hps as --weights.hps-arch;
    the CLIP score is 100 cos, HPSv2.1 the raw cos with HPS's preprocessing (ToTensor first)."""
    import tlcm.eval.metrics as metrics
    from tlcm.eval.metrics import SCORERS
    from tlcm.eval.weights import MetricWeights

    loaded = []

    def load(arch, file, field, device):
        loaded.append((arch, Path(file).name, field))
        return _UnitOpenClip(), lambda prompts: torch.zeros(len(prompts), 3, dtype=torch.long), 16

    monkeypatch.setattr(metrics, "load_open_clip", load)
    weights = MetricWeights(
        clip=tmp_path / "g14.bin", clip_arch="ViT-g-14", hps=tmp_path / "hps.pt", hps_arch="ViT-H-14"
    )
    images, prompts = [Image.new("RGB", (24, 16), "gray")] * 2, ["a", "b"]
    clip = SCORERS["clip"](weights, "cpu")
    hps = SCORERS["hps"](weights, "cpu")
    assert loaded == [("ViT-g-14", "g14.bin", "clip"), ("ViT-H-14", "hps.pt", "hps")]
    torch.testing.assert_close(clip(images, prompts), torch.tensor([60.0, 60.0]))
    torch.testing.assert_close(hps(images, prompts), torch.tensor([0.6, 0.6]))
    assert type(hps.transform.transforms[0]).__name__ == "ToTensor"
