"""Units of the evaluation suite and of the latent LPIPS trainer (red-team round 12): which image a
generate folder's prompt pairs with, which folders and weights files are accepted, the grid's shared
prompts, FID of the teacher itself, ImageReward's checkpoint checks and token length, and the latent
LPIPS trainer's held-out data, sampling range, learning-rate schedule and argument checks."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from eval_helpers import original_layout, tiny_bert_vocab, write_pngs
from PIL import Image

from tlcm.errors import TLCMError
from tlcm.eval import score as score_mod
from tlcm.eval.score import ScoreArgs, check_args, image_files, load_generated
from tlcm.eval.weights import (
    SOURCES,
    MetricWeights,
    _importable,
    need_clip_folder,
    need_file,
    need_packages,
)


def generated(folder: Path, label: str, prompts: list[str], order=None, missing=()) -> Path:
    """A generate output folder: meta.json, prompts.jsonl (records in ``order`` of their indices),
    images/NNNNN.png whose red level is 10 * index (none for the indices in ``missing``)."""
    (folder / "images").mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"label": label, "steps": 2}))
    order = list(range(len(prompts))) if order is None else order
    lines = [json.dumps({"index": i, "prompt": prompts[i], "image": None}) for i in order]
    (folder / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    rng = np.random.default_rng(len(label))
    for i in range(len(prompts)):
        if i not in missing:
            pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            pixels[0, 0] = (10 * i, 0, 0)
            Image.fromarray(pixels).save(folder / "images" / f"{i:05d}.png")
    return folder


# ---- a generate folder: images with their own prompts ----------------------------------------------


def test_each_file_pairs_with_its_records_prompt_in_any_record_order(tmp_path):
    """Each record names its image by its index: a prompts.jsonl listing its records out of index
    order (generate writes them in order; a merged or hand-made file need not) still pairs image k
    (red level 10 k) with "prompt k", position by position."""
    run = load_generated(generated(tmp_path / "run", "m", [f"prompt {k}" for k in range(4)], [2, 0, 3, 1]))
    assert [f.name for f in run.files] == ["00002.png", "00000.png", "00003.png", "00001.png"]
    for file, prompt in zip(run.files, run.prompts, strict=True):
        with Image.open(file) as image:
            assert prompt == f"prompt {image.getpixel((0, 0))[0] // 10}"


def test_a_folder_missing_any_image_is_refused(tmp_path):
    folder = generated(tmp_path / "run", "m", ["a", "b", "c"], missing=(1,))
    with pytest.raises(TLCMError, match="has 2 of 3 images"):
        load_generated(folder)


def test_reference_folder_needs_two_images_of_any_suffix_case(tmp_path):
    ref = tmp_path / "ref"
    ref.mkdir()
    Image.new("RGB", (8, 8)).save(ref / "b.PNG")
    (ref / "notes.txt").write_text("x")
    with pytest.raises(TLCMError, match="holds 1 images"):
        image_files(ref, "--reference")
    Image.new("RGB", (8, 8)).save(ref / "a.JPG", format="JPEG")
    assert [p.name for p in image_files(ref, "--reference")] == ["a.JPG", "b.PNG"]


def test_a_generate_folder_as_reference_gives_its_images(tmp_path):
    folder = generated(tmp_path / "teacher", "t", ["a", "b", "c"], [1, 2, 0])
    assert image_files(folder, "--teacher") == load_generated(folder).files


def test_fid_t_needs_a_teacher_and_zero_grid_prompts_are_allowed(tmp_path):
    folder = generated(tmp_path / "run", "m", ["a", "b"])
    args = ScoreArgs(images=(folder,), metrics=("fid-t",), reference=folder, out=tmp_path / "o", device="cpu")
    with pytest.raises(TLCMError, match="needs --teacher"):
        check_args(args)
    args = ScoreArgs(images=(folder,), metrics=("clip",), grid_prompts=0, out=tmp_path / "o", device="cpu")
    check_args(args)  # no grid: fine


class MeanPixel(torch.nn.Module):
    """A stand-in for the FID Inception: uint8 (B, 3, 299, 299) -> (B, 4) pooled strided-conv features."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 23, stride=23)

    def forward(self, x):
        return self.conv(x.float() / 255).mean((2, 3))


def test_the_teacher_row_has_a_fid_but_no_fid_t_and_the_grid_shows_only_shared_prompts(tmp_path, monkeypatch):
    """Scoring the teacher folder itself: its FID-T (against itself) is left out, its FID is not.
    Two rows whose prompts differ at index 0 share only prompts 1, 2: the grid has 2 columns."""
    monkeypatch.setattr(score_mod, "load_inception", lambda path, device: MeanPixel())
    teacher = generated(tmp_path / "teacher", "teacher", ["x", "b", "c"])
    student = generated(tmp_path / "student", "student-run", ["y", "b", "c"])
    write_pngs(tmp_path / "coco", 4, size=40)
    out = tmp_path / "results"
    args = ScoreArgs(
        images=(teacher, student), out=out, metrics=("fid", "fid-t"), reference=tmp_path / "coco",
        teacher=teacher, device="cpu", batch_size=2,
    )  # fmt: skip
    rows = score_mod.score(args)
    assert rows[0]["fid-t"] is None and rows[0]["fid"] is not None and rows[0]["fid"] > 0
    assert rows[1]["fid-t"] is not None and rows[1]["fid-t"] > 0
    assert Image.open(out / "grid.png").size == (200 + 2 * 260, 64 + 2 * 260)


# ---- metric weights ------------------------------------------------------------------------------


def test_a_folder_is_not_a_weights_file_and_a_clip_folder_needs_its_config(tmp_path):
    (tmp_path / "ImageReward.pt").mkdir()
    with pytest.raises(TLCMError, match="is missing"):
        need_file(tmp_path / "ImageReward.pt", "image_reward")
    clip = tmp_path / "clip"
    clip.mkdir()
    (clip / "tokenizer.json").write_text("{}")
    with pytest.raises(TLCMError, match="config.json is missing"):
        need_clip_folder(clip, "pickscore")
    (clip / "config.json").write_text("{}")
    assert need_clip_folder(clip, "pickscore") == clip


def test_every_missing_package_is_named():
    assert not _importable("no_such_package_tlcm.sub")  # the parent is missing: not importable
    assert _importable("json")
    with pytest.raises(TLCMError, match="no_such_package_tlcm_b"):
        need_packages("clip", "json", "no_such_package_tlcm_b")


def test_default_weights_files_are_the_files_their_sources_name():
    """The default inception path is the file torch-fidelity's release URL downloads."""
    weights = MetricWeights()
    assert weights.inception.name == SOURCES["inception"].rsplit("/", 1)[-1]
    assert weights.hps.name in SOURCES["hps"] and weights.aesthetic_head.name in SOURCES["aesthetic_head"]


# ---- ImageReward ----------------------------------------------------------------------------------


def _image_reward_folder(tmp_path, sizes, wrap: bool, drop: str | None = None):
    from tlcm.eval.imagereward import ImageRewardModel

    torch.manual_seed(0)
    model = ImageRewardModel(sizes)
    state = original_layout(model.state_dict())
    if drop:
        state = {k: v for k, v in state.items() if drop not in k}
    tiny_bert_vocab(tmp_path)
    torch.save({"state_dict": state} if wrap else state, tmp_path / "ImageReward.pt")
    return model


def test_image_reward_reads_a_wrapped_checkpoint_and_refuses_one_missing_a_layer(tmp_path):
    from tlcm.eval.imagereward import BlipSizes, ImageRewardScorer

    sizes = BlipSizes(32, 1, 4, 32, 16, 32, 1, 4, 100)
    model = _image_reward_folder(tmp_path, sizes, wrap=True)
    scorer = ImageRewardScorer(tmp_path, "cpu", sizes)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(scorer.model.state_dict()[name], value, msg=name)
    _image_reward_folder(tmp_path, sizes, wrap=False, drop="mlp.layers.0.")
    with pytest.raises(TLCMError, match="not an ImageReward checkpoint of this size"):
        ImageRewardScorer(tmp_path, "cpu", sizes)


def test_image_reward_reads_35_tokens_as_the_reference_implementation():
    """ImageReward's ``score`` tokenises with max_length=35 (THUDM/ImageReward, ImageReward.py)."""
    from tlcm.eval.imagereward import MAX_TOKENS

    assert MAX_TOKENS == 35


# ---- latent LPIPS trainer -------------------------------------------------------------------------


def _train(tiny_sd, **kw):
    from tlcm.latent_lpips.data import PixelProxy
    from tlcm.latent_lpips.train import TrainArgs, train_latent_lpips
    from tlcm.toy.classifier import DigitClassifier

    torch.manual_seed(0)
    images = torch.rand(12, 3, 32, 32) * 2 - 1
    args = TrainArgs(**{"steps": 2, "batch_size": 4, "triplets": 8, "heldout_triplets": 4, **kw})
    args.channels = (2, 2, 4, 4, 4)
    return images, train_latent_lpips(
        tiny_sd.vae, PixelProxy(DigitClassifier()), images[:8], images[8:], args
    )


def test_training_samples_every_training_triplet_and_holds_out_the_heldout_images(tiny_sd, monkeypatch):
    """Fewer training than held-out triplets: batches index the training triplets only; the held-out
    triplets are made from the held-out images."""
    from tlcm.latent_lpips import train as train_mod

    seen = []
    real = train_mod.make_triplets

    def spy(vae, proxy, images, n, *rest, **kw):
        seen.append((images.clone(), n))
        return real(vae, proxy, images, n, *rest, **kw)

    monkeypatch.setattr(train_mod, "make_triplets", spy)
    images, _ = _train(tiny_sd, triplets=2, heldout_triplets=6)
    assert [n for _, n in seen] == [2, 6]
    assert torch.equal(seen[0][0], images[:8]) and torch.equal(seen[1][0], images[8:])


def test_learning_rate_decays_on_a_cosine_to_zero_over_the_steps(tiny_sd, monkeypatch):
    """lr_k = lr (1 + cos(pi k / steps)) / 2 at step k = 0..steps-1 (CosineAnnealingLR over all steps)."""
    used = []
    real_step = torch.optim.Adam.step

    def step(self, *a, **k):
        used.append(self.param_groups[0]["lr"])
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    _train(tiny_sd, steps=4, lr=1e-3)
    expected = [1e-3 * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(4)]
    assert used == pytest.approx(expected)


def test_digit_split_holds_out_identities_1500_to_1796_of_every_placement(monkeypatch):
    from tlcm.latent_lpips.train import load_images

    x = torch.arange(2 * 1797, dtype=torch.float32).view(-1, 1, 1, 1)
    monkeypatch.setattr("tlcm.toy.data.load_digit_images", lambda: (x, None))
    train, heldout = load_images(None, 8)
    ids = heldout.flatten().long() % 1797
    assert len(heldout) == 2 * 297 and ids.min() == 1500 and ids.max() == 1796
    assert len(train) == 2 * 1500 and (train.flatten().long() % 1797).max() == 1499


def test_an_image_folder_needs_ten_images_and_its_last_tenth_is_held_out(tmp_path):
    from tlcm.latent_lpips.train import load_images

    write_pngs(tmp_path / "few", 9, size=16)
    with pytest.raises(TLCMError, match="at least 10"):
        load_images(tmp_path / "few", 8)
    write_pngs(tmp_path / "ten", 10, size=16)
    train, heldout = load_images(tmp_path / "ten", 8)
    assert len(train) == 9 and len(heldout) == 1


def test_a_zero_learning_rate_is_refused(tmp_path):
    from tlcm.latent_lpips.train import TrainArgs, main

    with pytest.raises(TLCMError, match="--lr must be a positive number"):  # before any other check
        main(TrainArgs(lr=0.0, out=tmp_path / "x.safetensors", model=tmp_path / "no-model"))
