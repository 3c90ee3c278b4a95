"""Red-team round 13, area outputs2: the student export's file names, bytes and arguments, the
latent-LPIPS trainer's images and checks, its latent <-> image conventions (diffusers': latents =
(z - shift) * scale), the CLIP-family scores' checks, the score registry, the evaluation prompt
sets' edges and the rewards' edges. Fast direct calls (no training)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from tlcm.errors import TLCMError
from tlcm.eval.prompts import load_prompt_set
from tlcm.export import run_name, save_safetensors

# ---- the export -------------------------------------------------------------------------------------


def test_a_run_given_as_dot_or_dotdot_names_its_kohya_file_by_the_folder(tmp_path, monkeypatch):
    """``python -m tlcm.export .`` from inside runs/my-run must write my-run_kohya.safetensors, as
    ``python -m tlcm.export runs/my-run`` does (".": no name of its own; "x/..": the name "..")."""
    run = tmp_path / "my-run"
    (run / "sub").mkdir(parents=True)
    monkeypatch.chdir(run)
    assert run_name(Path(".")) == "my-run"
    assert run_name(run / "sub" / "..") == "my-run"
    assert run_name(run) == "my-run"


def test_the_rewritten_header_is_sorted_json_padded_with_spaces_and_loads(tmp_path):
    """safetensors' format: 8-byte length, a JSON header padded with spaces (0x20), the data. The
    metadata comes back sorted by key, whatever order it was given in, and the file loads."""
    tensors = {"b": torch.arange(3.0), "a": torch.ones(2, 2)}
    metadata = {"zeta": "1", "alpha": "2", "mid": "3"}
    path = save_safetensors(tensors, metadata, tmp_path / "f.safetensors")
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    text = raw[8 : 8 + size].decode()
    body = text.rstrip(" ")
    assert set(text[len(body) :]) <= {" "}  # padding: spaces only (no NUL bytes)
    assert list(json.loads(body)["__metadata__"]) == ["alpha", "mid", "zeta"]
    with safe_open(path, "pt") as f:
        assert f.metadata() == metadata
    loaded = load_file(path)
    assert torch.equal(loaded["a"], tensors["a"]) and torch.equal(loaded["b"], tensors["b"])


@pytest.fixture(scope="module")
def lora_student(tiny_sd_dir):
    from tlcm.config import StudentConfig
    from tlcm.models.base import BaseModel
    from tlcm.models.student import Student

    torch.manual_seed(0)
    return Student(BaseModel.load(tiny_sd_dir), StudentConfig(lora_rank=2, lora_alpha=4.0))


def test_a_format_named_twice_is_written_and_reported_once(lora_student, tmp_path):
    from tlcm.export import export_student, kohya_file

    written = export_student(lora_student, tmp_path, ("kohya", "diffusers", "kohya"), name="r")
    assert [p.name for p in written] == [kohya_file("r"), "pytorch_lora_weights.safetensors"]


def test_the_weights_the_caller_gathered_are_the_ones_exported(lora_student, tmp_path):
    """FSDP2 gathers the full state dict on every process and passes it: the file holds those
    tensors (here: the student's own, each plus 1), not the process's own copy."""
    from tlcm.export import export_student

    gathered = {k: v + 1 for k, v in lora_student.state_dict().items()}
    (path,) = export_student(lora_student, tmp_path, ("diffusers",), weights=gathered)
    saved = load_file(path)
    assert len(saved) == len(gathered)
    for key, value in gathered.items():
        assert torch.equal(saved[f"unet.{key}"], value), key


def test_a_full_fine_tune_exports_a_unet_folder_diffusers_loads(tmp_path):
    from diffusers import UNet2DConditionModel

    from tlcm.config import StudentConfig
    from tlcm.export import export_student
    from tlcm.models.base import BaseModel
    from tlcm.models.student import Student
    from tlcm.toy import MINIATURE_SD

    student = Student(BaseModel.load(MINIATURE_SD), StudentConfig(full_finetune=True))
    (folder,) = export_student(student, tmp_path)
    assert folder == tmp_path / "unet"
    unet = UNet2DConditionModel.from_pretrained(folder)
    ours = student.net.state_dict()
    theirs = unet.state_dict()
    assert set(theirs) == set(ours)
    assert all(torch.equal(theirs[k], ours[k]) for k in ours)


# ---- the latent-LPIPS trainer ---------------------------------------------------------------------


def _png(path: Path, colour, size=(8, 8)) -> None:
    Image.new("RGB", size, colour).save(path)


def test_a_folders_last_tenth_by_name_is_held_out_and_upper_case_suffixes_count(tmp_path):
    from tlcm.latent_lpips.train import load_images

    for i in range(20):  # grey level i * 10 identifies the file; every other one a .PNG
        _png(tmp_path / f"img{i:02d}.{'PNG' if i % 2 else 'png'}", (i * 10,) * 3)
    (tmp_path / "notes.txt").write_text("not an image")
    train, heldout = load_images(tmp_path, 8)
    assert train.shape == (18, 3, 8, 8) and heldout.shape == (2, 3, 8, 8)
    assert train.dtype == torch.uint8
    assert heldout[:, 0, 0, 0].tolist() == [180, 190]  # img18, img19: the last tenth
    assert train[:, 0, 0, 0].tolist() == [i * 10 for i in range(18)]


def test_a_wide_image_is_resized_by_its_short_side_and_centre_cropped(tmp_path):
    """A 64 x 16 image (red left eighth, blue right eighth, grey between) at size 8: resized to
    32 x 8 and cropped to the middle 8 x 8, which holds only grey; a squashed image keeps the red."""
    from tlcm.latent_lpips.train import load_images

    image = Image.new("RGB", (64, 16), (128, 128, 128))
    image.paste((255, 0, 0), (0, 0, 8, 16))
    image.paste((0, 0, 255), (56, 0, 64, 16))
    for i in range(10):
        image.save(tmp_path / f"{i}.png")
    train, _ = load_images(tmp_path, 8)
    x = train[0].int()
    assert (x - 128).abs().max() <= 2  # grey everywhere: no red or blue survives the crop


def test_zero_steps_and_a_file_for_images_are_told_apart_before_anything_loads(tmp_path):
    """--steps 0 is allowed (the untrained network's held-out numbers): the first complaint about
    this command line is its --out suffix; --images naming one image file is refused as no folder."""
    from tlcm.latent_lpips.train import TrainArgs, main

    with pytest.raises(TLCMError, match="--out"):
        main(TrainArgs(steps=0, out=tmp_path / "net.txt"))
    image = tmp_path / "a.png"
    _png(image, (0, 0, 0))
    with pytest.raises(TLCMError, match="is not a folder"):
        main(TrainArgs(images=image, out=tmp_path / "net.safetensors"))


class AffineVAE(torch.nn.Module):
    """A stand-in VAE whose latent is the image itself (encode and decode are the identity), with
    an SD3-style config: scaling 2, shift 0.5."""

    def __init__(self) -> None:
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))
        self.config = SimpleNamespace(scaling_factor=2.0, shift_factor=0.5)

    def encode(self, x):
        return SimpleNamespace(latent_dist=SimpleNamespace(mode=lambda: x.clone()))

    def decode(self, z):
        return SimpleNamespace(sample=z.clone())


def test_latents_are_shifted_then_scaled_and_decoded_back_as_diffusers_does():
    """diffusers' SD3 / FLUX pipelines: the transformer sees (z - shift) * scale and decodes
    latents / scale + shift."""
    from tlcm.latent_lpips.data import _to_image, _to_latent
    from tlcm.models.families import FAMILIES

    vae, x = AffineVAE(), torch.tensor([[[[0.0, 0.5, 1.0]]]])
    for family in (FAMILIES["StableDiffusion3Pipeline"], FAMILIES["FluxPipeline"]):
        torch.testing.assert_close(_to_latent(vae, x, family), torch.tensor([[[[-1.0, 0.0, 1.0]]]]))
        torch.testing.assert_close(_to_image(vae, torch.tensor([[[[-1.0, 0.0, 1.0]]]]), family), x)


def test_a_triplet_count_off_the_chunk_makes_exactly_that_many():
    from tlcm.latent_lpips.data import make_triplets

    images = torch.rand(6, 3, 8, 8) * 2 - 1
    proxy = lambda a, b: (a - b).square().flatten(1).mean(1)  # noqa: E731
    out = make_triplets(AffineVAE(), proxy, images, 5, 0.0, torch.Generator().manual_seed(0), chunk=2)
    assert out["z"].shape == (5, 3, 3, 8, 8) and out["p"].shape == (5, 3)


# ---- CLIP-family scores, the registry, the rewards ------------------------------------------------


def test_the_aesthetic_score_with_an_empty_head_path_says_it_needs_one(tiny_clip_dir):
    from tlcm.scoring.clip import ClipScore, HeadError

    with pytest.raises(HeadError, match="needs its MLP head file"):
        ClipScore("aesthetic", tiny_clip_dir, head_file="")


def test_a_score_registered_for_an_unknown_use_is_refused():
    from tlcm.scoring import SCORES, register_score

    with pytest.raises(ValueError, match="use must be one of"):
        register_score("outputs2-probe", "metrics")
    assert "outputs2-probe" not in SCORES


def test_a_reward_called_on_images_scores_their_embeddings(tiny_clip_dir):
    from tlcm.rewards import RewardSpec, build_reward

    reward = build_reward("clip", RewardSpec(clip_folder=str(tiny_clip_dir)))
    images, prompts = torch.rand(2, 3, 32, 32) * 2 - 1, ["a red square", "a blue circle"]
    cos = (reward.clip.image(images) * reward.clip.text(prompts)).sum(-1)
    torch.testing.assert_close(reward(images, prompts), 100 * cos)  # CLIP score: 100 cos, unclamped


def test_a_reward_without_its_folder_names_the_flag():
    from tlcm.rewards import RewardSpec, build_reward

    for name in ("clip", "pickscore", "aesthetic"):
        with pytest.raises(ValueError, match=r"needs clip_folder \(a local path; the flag: .clip-folder\)"):
            build_reward(name, RewardSpec(clip_folder=""))


def test_a_batch_of_one_prompt_is_its_own_unrelated_prompt():
    from tlcm.rewards import shifted_prompts

    assert shifted_prompts(["a seven"], torch.Generator().manual_seed(0)) == ["a seven"]
    assert shifted_prompts([], torch.Generator().manual_seed(0)) == []


def test_an_unrelated_prompt_is_another_text_whenever_the_batch_has_one():
    """["a", "a", "b"]: both "a"s must get "b" (the docstring: the same text is skipped when the
    batch has another). Before the fix the search looked at n - 1 offsets from the shift, missing
    offset shift - 1: with shift 2 the second "a" (its "b" at offset 1) got "a", about half the draws;
    the hinge then pushed down the reward of the image for its own prompt."""
    from tlcm.rewards import shifted_prompts

    for prompts in (["a", "a", "b"], ["a", "b", "b", "b"], ["x", "x", "x", "y", "x"]):
        for seed in range(20):
            out = shifted_prompts(prompts, torch.Generator().manual_seed(seed))
            assert all(o != p for o, p in zip(out, prompts, strict=True)), (prompts, seed, out)
    assert shifted_prompts(["a", "a"], torch.Generator().manual_seed(0)) == ["a", "a"]  # no other


def test_the_digit_of_a_prompt_is_a_single_digit_or_a_digit_word():
    from tlcm.rewards.digit import prompt_digit

    assert prompt_digit("a 1999 drawing of the digit seven") == 7
    assert prompt_digit("10 ways to draw 3") == 3


# ---- prompt sets ----------------------------------------------------------------------------------


def test_a_prompt_set_can_be_asked_for_whole_and_blank_entries_are_not_prompts(tmp_path):
    path = tmp_path / "anime.json"
    path.write_text(json.dumps(["b cat", "  ", "a dog", "c  owl "]))
    assert [r.prompt for r in load_prompt_set(path, num=3)] == ["b cat", "a dog", "c owl"]
    with pytest.raises(TLCMError, match="fewer than --num-prompts 4"):
        load_prompt_set(path, num=4)
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    with pytest.raises(TLCMError, match="holds no prompts"):
        load_prompt_set(empty)


def test_every_coco_image_can_be_asked_for(tmp_path):
    data = {
        "images": [{"id": i, "file_name": f"{i}.jpg"} for i in range(3)],
        "annotations": [{"id": i, "image_id": i, "caption": f"cap {i}"} for i in range(3)],
    }
    path = tmp_path / "captions_val2017.json"
    path.write_text(json.dumps(data))
    assert [r.image for r in load_prompt_set(path, num=3)] == ["0.jpg", "1.jpg", "2.jpg"]


def test_a_parti_prompt_with_commas_is_one_prompt(tmp_path):
    path = tmp_path / "PartiPrompts.tsv"
    path.write_text("Prompt\tCategory\nA cat, a dog, and an owl\tAnimals\n")
    assert [r.prompt for r in load_prompt_set(path)] == ["A cat, a dog, and an owl"]
