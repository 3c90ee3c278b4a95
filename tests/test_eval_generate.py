"""``python -m tlcm.evaluate generate`` and ``score`` on a tiny random SD pipeline (32 px, CPU):
resumable generation, the same noise per prompt in any batch size and torchrun share, students from
an export folder and from a bare LoRA file, and the score command's table, FID plumbing and grid."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from eval_helpers import write_pngs
from PIL import Image
from tiny_pipelines import tiny_sd_pipeline

from tlcm.checkpoint import TrainState, save_checkpoint
from tlcm.config import StudentConfig
from tlcm.errors import TLCMError
from tlcm.evaluate import cli
from tlcm.export import DIFFUSERS_FILE, export_student
from tlcm.models.base import BaseModel
from tlcm.models.student import Student

PROMPTS = ["a red cube", "a blue ball", "a cat", "a dog"]


@pytest.fixture(scope="module")
def run_dir(tiny_sd_dir, tmp_path_factory):
    """A tlcm run folder with a checkpoint and an export (RUN/student) of a random rank-4 LoRA student."""
    run = tmp_path_factory.mktemp("runs") / "tiny-run"
    torch.manual_seed(0)
    student = Student(BaseModel.load(tiny_sd_dir), StudentConfig(lora_rank=4))
    with torch.no_grad():
        for name, param in student.net.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.1)
    export_student(student, run / "student")
    save_checkpoint(run, TrainState(1, 0, 1), student.state_dict(), {}, {}, metadata=student.metadata())
    return run


def generate(tiny_sd_dir, out, *extra):
    prompts = out.parent / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    args = ["--model", str(tiny_sd_dir), "--prompts", str(prompts), "--out", str(out), "--resolution", "32"]
    return cli(["generate", *args, "--device", "cpu", "--steps", "2", *extra])


def pixels(folder) -> torch.Tensor:
    """The folder's images (N, H, W, 3) as ints, in index order."""
    files = sorted((folder / "images").glob("*.png"))
    return torch.stack([torch.from_numpy(np.array(Image.open(f))).int() for f in files])


def test_generation_resumes_and_regenerates_only_missing_images(tiny_sd_dir, tmp_path):
    out = tmp_path / "teacher"
    assert generate(tiny_sd_dir, out, "--batch-size", "3") == 4
    meta = json.loads((out / "meta.json").read_text())
    assert meta["sampler"] == "ddim" and meta["steps"] == 2 and meta["guidance_scale"] == 8.0
    lines = (out / "prompts.jsonl").read_text().splitlines()
    assert [json.loads(line)["prompt"] for line in lines] == PROMPTS
    assert generate(tiny_sd_dir, out) == 0  # nothing left to do (the model is not even loaded)
    before = pixels(out)[2]
    (out / "images" / "00002.png").unlink()
    assert generate(tiny_sd_dir, out) == 1  # a batch of 1, where the first run had a batch of 3
    assert (pixels(out)[2] - before).abs().max() <= 1  # the same noise, the same image (CPU round-off)
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{i:05d}.png" for i in range(4)]
    with pytest.raises(TLCMError, match="other settings.*steps"):
        generate(tiny_sd_dir, out, "--steps", "3")


def test_noise_is_fixed_per_prompt_across_batch_sizes_and_torchrun_shares(tiny_sd_dir, tmp_path, monkeypatch):
    generate(tiny_sd_dir, tmp_path / "one", "--batch-size", "4")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert generate(tiny_sd_dir, tmp_path / "two", "--batch-size", "1") == 2
    assert sorted(p.name for p in (tmp_path / "two" / "images").iterdir()) == ["00000.png", "00002.png"]
    monkeypatch.setenv("RANK", "1")
    assert generate(tiny_sd_dir, tmp_path / "two", "--batch-size", "1") == 2
    assert (pixels(tmp_path / "one") - pixels(tmp_path / "two")).abs().max() <= 1  # batch round-off only


def test_each_seed_and_image_starts_from_its_own_noise(tiny_sd_dir, tmp_path):
    """The starting noise differs between --seed values (torch's CPU generator keeps only a seed's
    low 32 bits: seeding (seed << 32) + i gave every seed image i's noise) and between images; a
    folder made with the earlier seeding (no "noise" in its meta.json) is refused, not mixed."""
    from tlcm.eval.generate import noise_generator

    def first(seed, index):
        return torch.randn(16, generator=noise_generator(seed, index))

    draws = [first(seed, i) for seed in (0, 1, 7, 2**31 - 1) for i in (0, 1, 4999)]
    assert all(not torch.equal(a, b) for j, a in enumerate(draws) for b in draws[j + 1 :])
    assert torch.equal(first(7, 3), first(7, 3))
    out = tmp_path / "old"
    generate(tiny_sd_dir, out)
    meta = json.loads((out / "meta.json").read_text())
    del meta["noise"]
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(TLCMError, match="other settings.*noise"):
        generate(tiny_sd_dir, out)


def test_students_from_an_export_a_lora_file_a_checkpoint_and_a_unet(tiny_sd_dir, run_dir, tmp_path):
    assert generate(tiny_sd_dir, tmp_path / "run", "--student", str(run_dir)) == 4
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["sampler"] == "tlcm" and meta["label"] == "tiny-run" and meta["guidance_scale"] is None
    lora = run_dir / "student" / DIFFUSERS_FILE
    generate(tiny_sd_dir, tmp_path / "lora", "--student", str(lora), "--label", "bare LoRA")
    assert torch.equal(pixels(tmp_path / "run"), pixels(tmp_path / "lora"))
    shutil.copytree(run_dir / "checkpoints", tmp_path / "ckpt-run" / "checkpoints")  # no export
    generate(tiny_sd_dir, tmp_path / "ckpt", "--student", str(tmp_path / "ckpt-run"))
    assert (pixels(tmp_path / "run") - pixels(tmp_path / "ckpt")).abs().max() <= 1
    tiny_sd_pipeline().unet.save_pretrained(tmp_path / "unet")  # a full UNet folder: the base's own
    assert generate(tiny_sd_dir, tmp_path / "full", "--student", str(tmp_path / "unet")) == 4
    assert not torch.equal(pixels(tmp_path / "run"), pixels(tmp_path / "full"))  # the LoRA matters
    generate(tiny_sd_dir, tmp_path / "teacher")
    assert not torch.equal(pixels(tmp_path / "run"), pixels(tmp_path / "teacher"))
    with pytest.raises(TLCMError, match="samples 1..8 steps"):
        generate(tiny_sd_dir, tmp_path / "nine", "--student", str(run_dir), "--steps", "9")
    assert not (tmp_path / "nine" / "meta.json").exists()  # refused before writing: the folder is usable
    assert generate(tiny_sd_dir, tmp_path / "nine", "--student", str(run_dir)) == 4


class TinyFeatures(torch.nn.Module):
    """A stand-in for the FID Inception: uint8 (B, 3, 299, 299) -> (B, 8)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 23, stride=23)

    def forward(self, x):
        return self.conv(x.float() / 255).mean((2, 3))


def test_score_writes_table_json_grid_and_fid_cache(
    tiny_sd_dir, run_dir, tiny_clip_dir, tmp_path, monkeypatch
):
    monkeypatch.setattr("tlcm.eval.score.load_inception", lambda path, device: TinyFeatures())
    teacher, student, out = tmp_path / "teacher", tmp_path / "student", tmp_path / "results"
    generate(tiny_sd_dir, teacher)
    generate(tiny_sd_dir, student, "--student", str(run_dir))
    write_pngs(tmp_path / "coco", 5, size=48)
    args = ["score", "--images", str(teacher), str(student), "--metrics", "fid", "fid-t", "clip"]
    args += ["--reference", str(tmp_path / "coco"), "--teacher", str(teacher)]
    args += ["--weights.clip", str(tiny_clip_dir)]
    rows = cli([*args, "--out", str(out), "--device", "cpu", "--grid-prompts", "3", "--batch-size", "3"])
    lines = (out / "results.md").read_text().splitlines()
    assert lines[0] == "| model | steps | FID | FID-T | CLIP score |"
    assert lines[2].startswith(f"| {tiny_sd_dir.name} (ddim, w=8) | 2 | ")
    assert lines[2].split(" | ")[3] == "-"  # the teacher's FID-T (against itself) is left out
    assert lines[3].startswith("| tiny-run | 2 | ")
    saved = json.loads((out / "results.json").read_text())
    assert saved == json.loads(json.dumps(rows)) and saved[1]["fid-t"] > 0 and saved[0]["fid"] > 0
    assert len(list((out / "fid_stats").glob("*.safetensors"))) == 2  # reference and teacher, cached
    assert Image.open(out / "grid.png").size == (200 + 3 * 260, 64 + 2 * 260)  # prompts on top
    again = cli([*args, "--out", str(out), "--device", "cpu", "--grid-prompts", "0"])
    assert [r["fid"] for r in again] == pytest.approx([r["fid"] for r in rows])
    (student / "images" / "00001.png").unlink()
    with pytest.raises(TLCMError, match="has 3 of 4 images"):
        cli([*args, "--out", str(out), "--device", "cpu"])
    with pytest.raises(TLCMError, match="needs --reference"):
        cli(["score", "--images", str(teacher), "--metrics", "fid", "--out", str(out)])


class PipelineSpy:
    """A loaded pipeline whose calls are recorded (prompt and starting latents per image) and answered
    with blank images; everything else is the real pipeline's."""

    def __init__(self, pipe, calls):
        self._pipe, self._calls = pipe, calls

    def __getattr__(self, name):
        return getattr(self._pipe, name)

    def __call__(self, prompt, latents, **kwargs):
        self._calls += list(zip(prompt, latents.clone(), strict=True))
        return type("Out", (), {"images": [Image.new("RGB", (32, 32)) for _ in prompt]})


def test_teacher_and_student_get_the_same_prompts_and_noise(tiny_sd_dir, run_dir, tmp_path, monkeypatch):
    """A seeded subset of 4 of 10 prompts, teacher (batches of 3) and student (batches of 4): the same
    prompts in the same order, and image i of both starts from the same noise (other images from
    other noise), so FID-T and the grid compare like with like."""
    import tlcm.eval.pipeline as pipeline_module

    load, calls = pipeline_module.load_pipeline, {}

    def spied(*args):
        base = load(*args)
        base.pipe = PipelineSpy(base.pipe, calls.setdefault("student" if args[2] else "teacher", []))
        return base

    monkeypatch.setattr(pipeline_module, "load_pipeline", spied)
    prompts = tmp_path / "ten.txt"
    prompts.write_text("\n".join(f"prompt number {i}" for i in range(10)) + "\n")
    common = ["generate", "--model", str(tiny_sd_dir), "--prompts", str(prompts), "--num-prompts", "4"]
    common += ["--seed", "7", "--resolution", "32", "--device", "cpu", "--steps", "2"]
    cli([*common, "--out", str(tmp_path / "teacher"), "--batch-size", "3"])
    cli([*common, "--out", str(tmp_path / "student"), "--batch-size", "4", "--student", str(run_dir)])
    teacher, student = calls["teacher"], calls["student"]
    assert len(teacher) == len(student) == 4
    assert [p for p, _ in teacher] == [p for p, _ in student]
    listed = [
        json.loads(line)["prompt"]
        for line in (tmp_path / "student" / "prompts.jsonl").read_text().splitlines()
    ]
    assert listed == [p for p, _ in teacher]
    for i, ((_, a), (_, b)) in enumerate(zip(teacher, student, strict=True)):
        assert torch.equal(a, b), i
    assert not torch.equal(teacher[0][1], teacher[1][1])


class GuidanceSpy:
    """A loaded pipeline whose calls are recorded (their guidance_scale) and then run as usual."""

    def __init__(self, pipe: object, scales: list[float]) -> None:
        self._pipe, self._scales = pipe, scales

    def __getattr__(self, name: str) -> object:
        return getattr(self._pipe, name)

    def __call__(self, **kwargs: object) -> object:
        self._scales.append(kwargs["guidance_scale"])
        return self._pipe(**kwargs)


def test_a_student_samples_without_cfg_and_the_teacher_with_its_scale(
    tiny_sd_dir: Path, run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A distilled student samples without classifier-free guidance (its one UNet call per step sees
    the B latents), the teacher with --guidance-scale w > 1 (diffusers' CFG: the UNet sees 2B, the
    unconditional and conditional copies): recorded in the real pipelines of 4 prompts in batches of
    2 (batch sizes the UNet saw, and the guidance_scale each pipeline call was given)."""
    import tlcm.eval.pipeline as pipeline_module

    load, seen = pipeline_module.load_pipeline, {}

    def spied(*args: object) -> BaseModel:
        base = load(*args)
        record = seen.setdefault("student" if args[2] else "teacher", {"unet": [], "w": []})
        base.pipe.unet.register_forward_pre_hook(lambda module, a: record["unet"].append(a[0].shape[0]))
        base.pipe = GuidanceSpy(base.pipe, record["w"])
        return base

    monkeypatch.setattr(pipeline_module, "load_pipeline", spied)
    common = ["--batch-size", "2", "--guidance-scale", "5"]
    generate(tiny_sd_dir, tmp_path / "teacher", *common)
    generate(tiny_sd_dir, tmp_path / "student", *common, "--student", str(run_dir))
    teacher, student = seen["teacher"], seen["student"]
    assert teacher["w"] == [5.0, 5.0] and teacher["unet"] == [4] * 4  # 2 batches x 2 steps
    assert len(student["w"]) == 2 and all(w <= 1 for w in student["w"]) and student["unet"] == [2] * 4


def generated_folder(folder, label, images: list[Image.Image], prompts: list[str]):
    """A complete ``generate`` output folder written by hand (meta.json, prompts.jsonl, images/)."""
    (folder / "images").mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"label": label, "steps": 4}))
    lines = [json.dumps({"index": i, "prompt": p, "image": None}) for i, p in enumerate(prompts)]
    (folder / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    for i, image in enumerate(images):
        image.save(folder / "images" / f"{i:05d}.png")
    return folder


def test_mean_score_averages_every_image_with_its_own_prompt(tmp_path):
    """5 images in batches of 2, 2, 1; the fake scorer gives image k (red level 10 k) the score k
    when it comes with its own prompt "prompt k", -100 otherwise: the mean is (0+1+2+3+4) / 5 = 2."""
    from tlcm.eval.score import _mean_score, load_generated

    images = [Image.new("RGB", (8, 8), (10 * k, 0, 0)) for k in range(5)]
    run = load_generated(generated_folder(tmp_path / "run", "m", images, [f"prompt {k}" for k in range(5)]))

    def scorer(batch, prompts):
        scores = []
        for image, prompt in zip(batch, prompts, strict=True):
            k = image.getpixel((0, 0))[0] // 10
            scores.append(float(k) if prompt == f"prompt {k}" else -100.0)
        return torch.tensor(scores)

    seen = []
    assert _mean_score(scorer, run, 2, seen.append) == pytest.approx(2.0)
    assert seen == [2, 2, 1]


def test_fid_t_compares_with_the_teacher_folder(tmp_path, monkeypatch):
    """FID-T is the distance to the teacher's images: a copy of the teacher's folder scores FID-T 0
    (identical features) while its FID to other (reference) images is positive."""
    monkeypatch.setattr("tlcm.eval.score.load_inception", lambda path, device: TinyFeatures())
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(6)]
    teacher = generated_folder(tmp_path / "teacher", "teacher", images, [f"p{k}" for k in range(6)])
    copy = shutil.copytree(teacher, tmp_path / "copy")
    write_pngs(tmp_path / "coco", 6, size=48)
    args = [
        "score",
        "--images",
        str(copy),
        "--metrics",
        "fid",
        "fid-t",
        "--reference",
        str(tmp_path / "coco"),
    ]
    args += ["--teacher", str(teacher), "--out", str(tmp_path / "results"), "--device", "cpu"]
    (row,) = cli([*args, "--grid-prompts", "0"])
    assert row["fid"] > 1e-3 and abs(row["fid-t"]) < 1e-6


class _Loaded(Exception):
    """Raised by a stubbed load_pipeline: generation stops before any model loads."""


def test_default_steps_are_four_for_a_student_and_25_for_a_teacher(tiny_sd_dir, tmp_path, monkeypatch):
    """Without --steps (GenerateArgs.steps' documented default) the pipeline is built for 4 steps
    with --student (a few-step student) and 25 for the teacher. load_pipeline is stubbed: it
    records the step count and stops the run, so no model loads."""
    import tlcm.eval.pipeline as pipeline_module

    steps = {}

    def stub(model, device, student, n, *rest):
        steps["student" if student else "teacher"] = n
        raise _Loaded

    monkeypatch.setattr(pipeline_module, "load_pipeline", stub)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    (tmp_path / "a-student").mkdir()
    common = ["generate", "--model", str(tiny_sd_dir), "--prompts", str(prompts), "--device", "cpu"]
    for extra in ([], ["--student", str(tmp_path / "a-student")]):
        with pytest.raises(_Loaded):
            cli([*common, "--out", str(tmp_path / f"out{len(extra)}"), *extra])
    assert steps == {"teacher": 25, "student": 4}


def _student_of_another_grid(tiny_sd_dir) -> Student:
    """A rank-2 LoRA student on the tiny SD whose grid differs from the defaults a bare LoRA gets
    (M 8, gamma 1, no first-move gamma): M 4, gamma 0, first-move gamma 1."""
    from tlcm.diffusion.milestones import StudentGrid

    grid = StudentGrid(num_milestones=4, gamma=0.0, first_gamma=1.0)
    return Student(BaseModel.load(tiny_sd_dir), StudentConfig(lora_rank=2, lora_alpha=2.0, grid=grid))


def _sampler_settings(scheduler) -> tuple:
    """A TLCMScheduler's (gamma, first_gamma, num_milestones)."""
    return scheduler.config.gamma, scheduler.config.first_gamma, scheduler.config.num_milestones


def test_a_run_without_an_export_samples_on_the_grid_it_was_trained_on(tiny_sd_dir, tmp_path):
    """--student RUN with a checkpoint but no export: the TLCM sampler is built from the run's grid
    (M 4, gamma 0, first-move gamma 1), not from --num-milestones' default grid of a bare LoRA (M 8,
    gamma 1), so --steps 4 is its full grid and 5 is refused."""
    from tlcm.eval.pipeline import load_pipeline

    student = _student_of_another_grid(tiny_sd_dir)
    run = tmp_path / "run"
    save_checkpoint(run, TrainState(1, 0, 1), student.state_dict(), {}, {}, metadata=student.metadata())
    sampler = load_pipeline(tiny_sd_dir, "cpu", run, 4, "ddim", None, 8).pipe.scheduler
    assert _sampler_settings(sampler) == (0, 1, 4)
    with pytest.raises(TLCMError, match="samples 1..4 steps"):
        load_pipeline(tiny_sd_dir, "cpu", run, 5, "ddim", None, 8)


def test_gamma_sets_every_move_of_an_exports_sampler_the_first_included(tiny_sd_dir, tmp_path):
    """An export whose grid has gamma 0 and first-move gamma 1 samples with both by default; with
    --gamma 0.5 (GenerateArgs: "TLCMScheduler gamma") every move is at 0.5, the first one too
    (first_gamma None): the export's first-move gamma is not kept beside the flag's."""
    from tlcm.eval.pipeline import load_pipeline

    export_student(_student_of_another_grid(tiny_sd_dir), tmp_path / "export")
    as_trained = load_pipeline(tiny_sd_dir, "cpu", tmp_path / "export", 2, "ddim", None, 8).pipe.scheduler
    assert _sampler_settings(as_trained) == (0, 1, 4)
    flagged = load_pipeline(tiny_sd_dir, "cpu", tmp_path / "export", 2, "ddim", 0.5, 8).pipe.scheduler
    assert _sampler_settings(flagged) == (0.5, None, 4)
