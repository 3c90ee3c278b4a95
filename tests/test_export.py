"""Student export: the diffusers and kohya LoRA files load in plain diffusers and give the student's
UNet output (SD and SDXL, conv LoRAs, alpha != rank); identical runs write identical bytes; the
model card; the converter command for existing runs."""

import json
import re
from dataclasses import replace

import pytest
import torch
import yaml
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from engine_helpers import shrink
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors import safe_open

import tlcm.toy.scores
import tlcm.train
from recipes import PRESETS
from tlcm import TLCMScheduler
from tlcm.checkpoint import TrainState, save_checkpoint
from tlcm.checks import validate_recipe
from tlcm.config import StudentConfig, recipe_dict
from tlcm.engine import train
from tlcm.errors import TLCMError
from tlcm.export import DIFFUSERS_FILE, ExportArgs, export_student, kohya_file, kohya_state_dict
from tlcm.export import main as export_main
from tlcm.models.base import BaseModel
from tlcm.models.families.sd import unet_kwargs
from tlcm.models.student import Student
from tlcm.toy import ASSET_DIR

RANK, ALPHA = 4, 8.0  # scale 2: a loader that takes alpha = rank is off by a factor of 2


def _lora_modules(unet: torch.nn.Module) -> list[str]:
    return [n for n, m in unet.named_modules() if isinstance(m, BaseTunerLayer)]


def _metadata(path) -> dict[str, str]:
    with safe_open(path, "pt") as f:
        return f.metadata()


@pytest.mark.parametrize("kind", ["sd", "sdxl"])
def test_kohya_and_diffusers_files_load_as_the_student(kind, tiny_sd_dir, tiny_sdxl_dir, tmp_path):
    folder, pipeline = {
        "sd": (tiny_sd_dir, StableDiffusionPipeline),
        "sdxl": (tiny_sdxl_dir, StableDiffusionXLPipeline),
    }[kind]
    torch.manual_seed(0)
    student = Student(BaseModel.load(folder), StudentConfig(lora_rank=RANK, lora_alpha=ALPHA))
    with torch.no_grad():  # B starts at 0: random values make every module's LoRA count
        for name, param in student.net.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.1)
    export_student(student, tmp_path, ("diffusers", "kohya"), name="run")
    modules = _lora_modules(student.net)
    assert any("attn2.to_out.0" in m for m in modules) and any("conv_shortcut" in m for m in modules)
    with safe_open(tmp_path / kohya_file("run"), "pt") as f:
        keys = set(f.keys())
        alphas = {f.get_tensor(k).item() for k in keys if k.endswith(".alpha")}
    expected = {"lora_unet_" + m.replace(".", "_") for m in modules}
    assert {k.split(".")[0] for k in keys} == expected and len(keys) == 3 * len(modules)
    assert alphas == {ALPHA}

    cond, _ = student.base.encode(["a digit"])
    x, t = torch.randn(1, *student.base.latent_shape), torch.tensor([500])
    with torch.no_grad():
        ours, teacher = student.denoiser()(x, t, cond), student.teacher()(x, t, cond)
    assert (ours - teacher).abs().max() > 0.1  # the LoRA matters: a wrong scale could not pass
    for weight_name in (DIFFUSERS_FILE, kohya_file("run")):
        pipe = pipeline.from_pretrained(folder)
        pipe.load_lora_weights(tmp_path, weight_name=weight_name)
        loaded = [m for m in pipe.unet.modules() if isinstance(m, BaseTunerLayer)]
        assert len(loaded) == len(modules)  # a dropped attention / conv LoRA fails here
        assert {s for m in loaded for s in m.scaling.values()} == {ALPHA / RANK}
        with torch.no_grad():
            theirs = pipe.unet(x, t, **unet_kwargs(cond)).sample
            pipe.fuse_lora()
            fused = pipe.unet(x, t, **unet_kwargs(cond)).sample
        torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(fused, ours, atol=1e-5, rtol=1e-4)


def test_kohya_key_mapping():
    lora = {
        "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight": torch.ones(4, 8),
        "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight": torch.ones(8, 4),
    }
    out = kohya_state_dict(lora, 8.0)
    name = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
    assert sorted(out) == [f"{name}.alpha", f"{name}.lora_down.weight", f"{name}.lora_up.weight"]
    assert out[f"{name}.alpha"].dim() == 0 and out[f"{name}.alpha"].item() == 8.0
    with pytest.raises(ValueError, match="not a plain LoRA weight"):
        kohya_state_dict({"conv1.lora_magnitude_vector": torch.ones(3)}, 8.0)


@pytest.fixture(scope="module")
def two_runs(tiny_sd_dir, tmp_path_factory):
    """Two identical 1-step runs into runs a/run and b/run, exporting both formats; b through
    train_and_score with stand-in scores (the card is rewritten with them)."""
    root = tmp_path_factory.mktemp("runs")
    recipes = []
    for side in "ab":
        recipe = shrink(PRESETS["mlcd"], tiny_sd_dir, root / side / "run", steps=1)
        runtime = replace(recipe.runtime, export_formats=("diffusers", "kohya"))
        recipes.append(replace(recipe, student=replace(recipe.student, lora_alpha=ALPHA), runtime=runtime))
    train(recipes[0])
    scores = [
        {"steps": 1, "prompts": 10, "alignment": 0.25, "fd": 3.5},
        {"steps": 2, "prompts": 10, "alignment": 0.5, "fd": 2.0},
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tlcm.toy.scores, "student_scores", lambda *a, **k: scores)
        patch.setattr(tlcm.train, "digit_assets", lambda model: ASSET_DIR)  # scored as a miniature
        b = replace(recipes[1], runtime=replace(recipes[1].runtime, eval_samples_per_digit=1))
        tlcm.train.train_and_score(b)
    return root / "a" / "run", root / "b" / "run", recipes[0], scores


def test_identical_runs_export_identical_bytes(two_runs):
    a, b, _, _ = two_runs
    files = sorted(p.name for p in (a / "student").glob("*.safetensors"))
    assert files == sorted([DIFFUSERS_FILE, kohya_file("run")])
    assert files == sorted(p.name for p in (b / "student").glob("*.safetensors"))
    for name in files:
        assert (a / "student" / name).read_bytes() == (b / "student" / name).read_bytes(), name
        raw = (a / "student" / name).read_bytes()
        header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
        assert list(header["__metadata__"]) == sorted(header["__metadata__"])


def _card(folder) -> tuple[dict, str]:
    text = (folder / "README.md").read_text()
    _, front, body = text.split("---\n", 2)
    return yaml.safe_load(front), body


def test_model_card(two_runs, tiny_sd_dir):
    a, b, recipe, scores = two_runs
    front, body = _card(a / "student")
    assert front["base_model"] == str(tiny_sd_dir) and front["library_name"] == "diffusers"
    assert {"lora", "tlcm", "text-to-image"} <= set(front["tags"])
    saved = json.loads(re.search(r"## Recipe\n\n```json\n(.*?)\n```", body, re.S).group(1))
    assert saved == json.loads(json.dumps(recipe_dict(recipe)))
    assert saved["student"]["lora_alpha"] == ALPHA and saved["runtime"]["out_dir"] == str(a)
    assert saved["phases"]["mlcd"]["losses"]["mlcd"]["class"] == "MLCDConfig"
    assert saved["runtime"]["export_formats"] == ["diffusers", "kohya"]
    assert re.search(r"Training time: \d+\.\d s wall clock", body)
    assert "Not evaluated" in body and "pipe.fuse_lora()" in body
    assert f"`{kohya_file('run')}` (kohya" in body  # written: export formats diffusers and kohya
    # a tiny UNet (block channels (32, 64)) is no architecture stock ComfyUI knows: no steps for it
    assert "Stock ComfyUI cannot load this base model" in body and "ComfyUI/models/loras/" not in body
    scheduler = TLCMScheduler.from_pretrained(a / "student" / "scheduler")
    table = dict(re.findall(r"^\| (\d+) \| ([\d, ]+) \|", body, re.M))
    assert sorted(table, key=int) == ["1", "2", "4", "8"]
    for n, timesteps in table.items():
        scheduler.set_timesteps(int(n))
        assert [int(t) for t in timesteps.split(", ")] == scheduler.timesteps.tolist()
    _, scored = _card(b / "student")
    assert "on 10 prompts" in scored and "| steps | alignment | FD |" in scored
    assert "| 2 | 0.500 | 2.00 |" in scored and "digit classifier's accuracy" in scored


def test_model_card_names_only_the_files_written_and_the_miniature_by_its_repository_path(two_runs, tmp_path):
    """The default export (diffusers only) has no kohya file, so the card lists none; a student of
    the bundled miniature names it relative to the repository (no user's home folder), which
    resolves there from any working directory."""
    from tlcm.card import write_model_card
    from tlcm.summary import from_repo_path
    from tlcm.toy import MINIATURE_SD

    student = Student(BaseModel.load(MINIATURE_SD), StudentConfig(lora_rank=RANK))
    export_student(student, tmp_path, ("diffusers",), name="run")
    front, body = _card(write_model_card(student, tmp_path, "run").parent)
    assert kohya_file("run") not in body.split("## Use in ComfyUI")[0]
    assert front["base_model"] == "tlcm/toy/assets/miniature-sd" and str(MINIATURE_SD) not in body
    assert from_repo_path(front["base_model"]).resolve() == MINIATURE_SD.resolve()


def test_converter_writes_the_engines_bytes_and_refuses_bad_input(two_runs, tiny_sd_dir, tmp_path):
    a, _, _, _ = two_runs
    out = tmp_path / "converted"
    written = export_main(ExportArgs(run=a, format=("kohya", "diffusers"), out=out))  # model: the card's
    assert sorted(p.name for p in written) == sorted([kohya_file("run"), DIFFUSERS_FILE])
    for path in written:
        assert path.read_bytes() == (a / "student" / path.name).read_bytes()
    assert (out / "README.md").read_text() == (a / "student" / "README.md").read_text()
    assert _metadata(out / kohya_file("run"))["ss_network_alpha"] == str(ALPHA)

    with pytest.raises(TLCMError, match="'onnx' is not an export format: use one or more of diffusers, k"):
        export_main(ExportArgs(run=a, format=("onnx",)))
    with pytest.raises(TLCMError, match="nowhere is not a folder"):
        export_main(ExportArgs(run=tmp_path / "nowhere"))
    full = tmp_path / "full"
    save_checkpoint(full, TrainState(1, 0, 1), {"conv_in.weight": torch.zeros(1)}, {}, {})
    with pytest.raises(TLCMError, match="holds a full fine-tune, not a LoRA"):
        export_main(ExportArgs(run=full, model=tiny_sd_dir))


def test_export_formats_are_validated(tiny_sd_dir, tmp_path):
    recipe = shrink(PRESETS["mlcd"], tiny_sd_dir, tmp_path)
    bad = replace(recipe, runtime=replace(recipe.runtime, export_formats=("kohya", "ckpt")))
    with pytest.raises(TLCMError, match="export-formats 'ckpt' is not an export format"):
        validate_recipe(bad)
    full = replace(
        recipe,
        student=replace(recipe.student, full_finetune=True),
        runtime=replace(recipe.runtime, export_formats=("kohya",)),
    )
    with pytest.raises(TLCMError, match="kohya holds a LoRA, but this student is a full fine-tune"):
        validate_recipe(full)


def test_comfyui_steps_say_when_the_student_ships_another_sampler_than_lcm():
    """ComfyUI's lcm sampler is gamma 1 at every move: the card says so for any other sampler."""
    from tlcm.card import _comfy_use
    from tlcm.diffusion.milestones import StudentGrid

    for grid in (StudentGrid(), StudentGrid(gamma=1.0, first_gamma=1.0)):
        assert "another sampler" not in _comfy_use("s.safetensors", "P", "/base", True, grid)
    text = _comfy_use("s.safetensors", "P", "/base", True, StudentGrid(gamma=0.0, first_gamma=1.0))
    assert "ships another sampler (gamma 0, first move 1)" in text


def test_comfyui_steps_only_for_a_unet_comfyui_recognises():
    from types import SimpleNamespace

    from tlcm.models.families import FAMILIES

    unet = lambda channels: SimpleNamespace(config=SimpleNamespace(block_out_channels=channels))  # noqa: E731
    sd, sdxl = FAMILIES["StableDiffusionPipeline"], FAMILIES["StableDiffusionXLPipeline"]
    assert sd.comfy_detects(unet([320, 640, 1280, 1280]))  # SD1.5
    assert sdxl.comfy_detects(unet([320, 640, 1280]))  # SDXL
    assert not sd.comfy_detects(unet([32, 64]))  # the bundled miniature


def test_the_exported_scheduler_keeps_the_grids_first_move_gamma(tiny_sd_dir, tmp_path):
    """A student trained with gamma 0 and first_gamma 1 exports a TLCMScheduler whose config says
    both, so a diffusers pipeline samples the first move (from pure noise) with fresh noise and the
    rest deterministically, as the student was trained."""
    from tlcm.diffusion.milestones import StudentGrid

    grid = StudentGrid(num_milestones=4, steps=4, gamma=0.0, first_gamma=1.0)
    student = Student(BaseModel.load(tiny_sd_dir), StudentConfig(lora_rank=2, lora_alpha=2.0, grid=grid))
    export_student(student, tmp_path)
    config = json.loads((tmp_path / "scheduler" / "scheduler_config.json").read_text())
    assert (config["num_milestones"], config["gamma"], config["first_gamma"]) == (4, 0.0, 1.0)


def test_card_states_the_lora_relation_scale_and_the_four_step_call(two_runs):
    """The a run: LoRA rank 4 (shrink), alpha 8: scale 8 / 4 = 2; the Hub's base_model_relation of a
    LoRA is "adapter"; the snippet samples 4 steps (min(4, M = 8)), what the card advertises."""
    a, _, _, _ = two_runs
    front, body = _card(a / "student")
    assert front["base_model_relation"] == "adapter"
    assert "LoRA rank 4, alpha 8 (scale alpha / rank = 2)" in body
    assert 'image = pipe("your prompt", num_inference_steps=4, guidance_scale=0' in body


def test_card_comfyui_sigmas_and_sgm_uniform_timesteps_by_hand():
    """ComfyUI (k-diffusion) sigmas are sqrt((1 - abar_t) / abar_t), then 0: diffusers'
    EulerDiscreteScheduler puts the same sigmas at the same timesteps (SD's sigma_max at 999 is
    the well-known 14.6146). ComfyUI's sgm_uniform steps at linspace(999, 0, n + 1) without the
    last point: 999 - 999 k / n, n = 4 -> 999, 749.25, 499.5, 249.75; n = 2 -> 999, 499.5."""
    from diffusers import EulerDiscreteScheduler

    from tlcm.card import comfy_sigmas, sgm_uniform_timesteps, timestep_rows

    sd = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
    euler = EulerDiscreteScheduler(**sd)
    euler.set_timesteps(timesteps=[999, 749, 499, 124])
    sigmas = comfy_sigmas(TLCMScheduler(**sd), [999, 749, 499, 124])
    assert len(sigmas) == 5 and sigmas[-1] == 0.0
    assert sigmas == pytest.approx(euler.sigmas.tolist(), rel=1e-6)
    assert sigmas[0] == pytest.approx(14.6146, abs=1e-4)
    assert sgm_uniform_timesteps(1, 1000) == [999.0]
    assert sgm_uniform_timesteps(2, 1000) == [999.0, 499.5]
    assert sgm_uniform_timesteps(4, 1000) == [999.0, 749.25, 499.5, 249.75]
    row = {r["steps"]: r for r in timestep_rows(TLCMScheduler(**sd), 8)}[4]
    assert row["sgm_uniform"] == "999, 749.25, 499.5, 249.75"
    assert row["ComfyUI sigmas"] == "14.6146, 4.08173, 1.61289, 0.397746, 0"


def test_flow_card_table_has_every_step_count_up_to_M():
    """SD3-style static shift 3, M = 8: rows for 1, 2, 4 and 8 steps; the 4-step sigmas are the
    milestones 1, 0.75, 0.5, 0.125 shifted by 3 s / (1 + 2 s): 1, 0.9, 0.75, 0.3, then 0."""
    from tlcm.card import flow_timestep_rows
    from tlcm.diffusion.scheduler import TLCMFlowScheduler

    rows = flow_timestep_rows(TLCMFlowScheduler(shift=3.0), 8, None)
    assert [r["steps"] for r in rows] == [1, 2, 4, 8]
    assert rows[2]["sigmas"] == "1, 0.9, 0.75, 0.3, 0"
    assert rows[2]["timesteps"] == "1000, 900, 750, 300"


def test_full_finetune_snippet_loads_the_students_unet():
    """A full fine-tune's diffusers snippet swaps in the exported UNet folder (OUT/unet), not the
    base's."""
    from tlcm.card import _diffusers_use
    from tlcm.toy import MINIATURE_SD

    student = Student(BaseModel.load(MINIATURE_SD), StudentConfig(full_finetune=True))
    text = _diffusers_use(student, "base/model", "runs/x/student", 4)
    assert 'pipe.unet = UNet2DConditionModel.from_pretrained("runs/x/student/unet")' in text
    assert "load_lora_weights" not in text


def test_the_cards_diffusers_snippet_runs_as_written(two_runs):
    """The card's "Use in diffusers" block is code users paste: run as written (a plain diffusers
    pipeline, the LoRA loaded and fused, the exported TLCMScheduler), it makes an image of the
    base model's size in the card's 4 steps, from the exported student, not the base model."""
    a, _, _, _ = two_runs
    _, body = _card(a / "student")
    code = re.search(r"## Use in diffusers\n\n```python\n(.*?)\n```", body, re.S).group(1)
    assert 'pipe.load_lora_weights("' + str(a / "student") + '")' in code
    torch.manual_seed(0)
    scope: dict = {}
    exec(code, scope)  # noqa: S102
    pipe, image = scope["pipe"], scope["image"]
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    assert isinstance(pipe.scheduler, TLCMScheduler) and image.size == (size, size)
    assert pipe.scheduler.timesteps.numel() == 4
    base = type(pipe).from_pretrained(pipe.name_or_path).unet
    x = torch.randn(1, base.config.in_channels, 8, 8)
    cond = torch.randn(1, 4, base.config.cross_attention_dim)
    with torch.no_grad():  # the fused LoRA changes the UNet's output: the student, not the base
        assert not torch.equal(pipe.unet(x, 999, cond).sample, base(x, 999, cond).sample)
