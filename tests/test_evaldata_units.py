"""Unit checks of the evaluation suite and the data readers (red-team round 13, area evaldata): FID
statistics and their cache per Inception weights file, the clean-fid resize and HPS preprocessing,
the generate command's argument and resume checks, the result tables' markdown, the image grids'
quantisation and layout, the toy digits (labels of placed digits, jitter strength, real-pair
subsets), prompt files' error messages, and the real image-text sources (caption member order,
whitespace metadata lines, ``verify``'s limit)."""

from __future__ import annotations

import io
import json
import sys
import tarfile
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tlcm.errors import TLCMError

# --------------------------------------------------------------------------------------- FID


class ScaledMeanColour(torch.nn.Module):
    """A stand-in for torchmetrics' NoTrainInceptionV3: features = mean colour x the number written
    in its weights file (so two weights files give two feature spaces)."""

    def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path: str) -> None:
        super().__init__()
        scale = float(Path(feature_extractor_weights_path).read_text())
        self.scale = torch.nn.Parameter(torch.tensor(scale), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().mean((2, 3)) * self.scale


def _fake_torchmetrics(monkeypatch) -> None:
    from tlcm.eval import fid

    module = types.ModuleType("torchmetrics.image.fid")
    module.NoTrainInceptionV3 = ScaledMeanColour
    for name in ("torchmetrics", "torchmetrics.image"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "torchmetrics.image.fid", module)
    monkeypatch.setattr(fid, "need_packages", lambda *args: None)


def _pngs(folder: Path, colours: list[tuple[int, int, int]], size=(8, 8)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for k, colour in enumerate(colours):
        Image.new("RGB", size, colour).save(folder / f"{k}.png")
        files.append(folder / f"{k}.png")
    return files


def test_fid_statistics_cached_for_one_inception_file_are_not_served_to_another(tmp_path, monkeypatch):
    """The reference statistics are cached (OUT/fid_stats) keyed by the images and the Inception
    weights file: scoring again with other --weights.inception must measure anew, not serve the
    statistics of the first weights (a FID between two feature spaces)."""
    from tlcm.eval.fid import image_stats, load_inception

    _fake_torchmetrics(monkeypatch)
    (tmp_path / "a.pth").write_text("1")
    (tmp_path / "b.pth").write_text("2")
    files = _pngs(tmp_path / "ref", [(10, 20, 30), (200, 0, 50), (0, 90, 250)])
    cache = tmp_path / "cache"
    first = image_stats(load_inception(tmp_path / "a.pth", "cpu"), files, 2, cache)
    other = image_stats(load_inception(tmp_path / "b.pth", "cpu"), files, 2, cache)
    torch.testing.assert_close(other.sum, 2 * first.sum)
    torch.testing.assert_close(other.outer, 4 * first.outer)
    done = []
    again = image_stats(load_inception(tmp_path / "a.pth", "cpu"), files, 2, cache, done.append)
    torch.testing.assert_close(again.sum, first.sum)
    assert len(list(cache.glob("*.safetensors"))) == 2
    assert sum(done) == len(files)  # a cache hit still moves the progress bar to its end


def test_fid_statistics_count_every_image_of_a_last_partial_batch(tmp_path):
    """5 images in batches of 2: the last batch holds one image, and it counts (n, mean)."""
    from tlcm.eval.fid import image_stats

    colours = [(10 * k, 0, 0) for k in range(5)]
    files = _pngs(tmp_path / "imgs", colours)

    class MeanColour(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return x.float().mean((2, 3))

    stats = image_stats(MeanColour(), files, 2)
    assert stats.n == 5
    mu, _ = stats.mean_cov()
    torch.testing.assert_close(mu, torch.tensor([20.0, 0.0, 0.0], dtype=torch.float64))


def test_fid_resize_is_a_cubic_kernel_that_overshoots_at_an_edge():
    """clean-fid resizes with PIL bicubic: a cubic kernel's negative lobes overshoot both sides of a
    step edge when upsampling (a linear kernel stays within the two grey levels)."""
    from tlcm.eval.fid import inception_batch

    step = np.full((32, 32, 3), 64, np.uint8)
    step[:, 16:] = 192
    (batch,) = inception_batch([Image.fromarray(step)])
    row = batch[0, 150].int()
    assert row.min() < 64 and row.max() > 192, (row.min(), row.max())


def test_hps_preprocessing_resizes_the_short_side_before_the_centre_crop(monkeypatch):
    """HPS's preprocessing (ToTensor, bicubic resize of the short side, centre crop, normalise) keeps
    the whole height of a wide image: its top band (a quarter of the height) stays in the input."""
    from tlcm.eval import metrics
    from tlcm.scoring.clip import OPENAI_MEAN, OPENAI_STD

    monkeypatch.setattr(metrics, "load_open_clip", lambda arch, file, field, device: (None, None, 32))
    scorer = metrics.OpenClip("ViT-H-14", Path("hps.pt"), "hps", "cpu", hps=True)
    pixels = np.zeros((64, 128, 3), np.uint8)
    pixels[:, :, 2] = 255  # blue
    pixels[:16] = (255, 0, 0)  # the top quarter red
    x = scorer.transform(Image.fromarray(pixels))
    x = x * torch.tensor(OPENAI_STD)[:, None, None] + torch.tensor(OPENAI_MEAN)[:, None, None]
    assert x.shape == (3, 32, 32)
    assert x[0, 1].mean() > 0.9 and x[2, 1].mean() < 0.1  # the top rows: red
    assert x[2, -1].mean() > 0.9 and x[0, -1].mean() < 0.1  # the bottom rows: blue


# --------------------------------------------------------------------------- pipeline, generate


def test_a_run_folder_with_checkpoints_but_no_export_is_a_run(tmp_path):
    from tlcm.eval.pipeline import student_kind

    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    assert student_kind(tmp_path / "run") == "run"
    (tmp_path / "exported" / "student").mkdir(parents=True)
    assert student_kind(tmp_path / "exported") == "run"


def test_generate_takes_one_step(tmp_path):
    """--steps 1 (the one-step student) passes the argument checks: the first error is the missing
    --model folder's."""
    from tlcm.eval.generate import GenerateArgs, check_args

    args = GenerateArgs(model=tmp_path / "missing", prompts=tmp_path / "p.txt", out=tmp_path / "out", steps=1)
    with pytest.raises(TLCMError, match="--model") as err:
        check_args(args)
    assert "--steps" not in str(err.value)


def test_generate_refuses_to_resume_a_folder_of_another_seed(tmp_path, monkeypatch):
    """A folder holding images of --seed 0 is not resumed with --seed 1 (other prompts, other noise):
    refused before any model loads."""
    import tlcm.models.folders as folders
    from tlcm.eval.generate import GenerateArgs, generate, settings

    monkeypatch.setattr(folders, "check_model_folder", lambda *args: None)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\na dog\n")
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(out / "images" / "00000.png")
    old = GenerateArgs(model=tmp_path / "model", prompts=prompts, out=out, device="cpu", seed=0)
    (out / "meta.json").write_text(json.dumps(settings(old, 25)))
    new = GenerateArgs(model=tmp_path / "model", prompts=prompts, out=out, device="cpu", seed=1)
    with pytest.raises(TLCMError, match=r"other settings \(seed\)"):
        generate(new)


# ----------------------------------------------------------------------------------- tables


def _cells(line: str) -> int:
    return line.strip().strip("|").count("|") + 1


def test_results_markdown_separator_has_a_cell_per_column():
    from tlcm.eval.table import results_markdown

    rows = [{"model": "a", "steps": 4, "fid": 20.5, "clip": 30.25}]
    lines = results_markdown(rows, ["clip", "fid"]).splitlines()
    assert [_cells(line) for line in lines] == [4, 4, 4]
    assert set(lines[1]) <= set("|-")


def test_toy_markdown_table_separator_has_a_cell_per_column():
    from tlcm.evaluate import markdown_table

    lines = markdown_table([{"w": 1.5, "steps": 2, "fd": 3.0}], ["w", "steps", "fd"]).splitlines()
    assert lines == ["| w | steps | fd |", "|---|---|---|", "| 1.500 | 2 | 3.000 |"]


def test_the_image_grids_last_row_is_whole_under_a_band_of_prompts(tmp_path):
    from tlcm.eval.table import image_grid

    red = _pngs(tmp_path / "a", [(255, 0, 0)], (16, 16))
    green = _pngs(tmp_path / "b", [(0, 255, 0)], (16, 16))
    out = image_grid(
        [("a", red), ("b", green)], tmp_path / "grid.png", ["a prompt"], thumb=64, label_width=40
    )
    with Image.open(out) as grid:
        top = 64 // 4
        last = top + (64 + 4)  # the second row's top
        assert grid.size[1] >= last + 64
        assert grid.getpixel((40 + 32, last + 63)) == (0, 255, 0)
        assert grid.getpixel((40 + 32, top)) == (255, 0, 0)


def test_evaluate_takes_one_step():
    from tlcm.evaluate import _check_steps

    _check_steps((1,))
    _check_steps((1, 2, 4))
    with pytest.raises(TLCMError, match="--steps must be one or more step counts >= 1"):
        _check_steps((0, 4))


def test_compare_refuses_a_student_score_file_without_fd(tmp_path):
    from tlcm.evaluate import compare

    run = tmp_path / "run"
    run.mkdir()
    (run / "eval.json").write_text(json.dumps([{"steps": 1, "prompts": 200, "alignment": 0.8}]))
    teacher = tmp_path / "teacher.json"
    teacher.write_text(json.dumps([{"w": 2.0, "steps": 1, "prompts": 200, "alignment": 0.9, "fd": 9.0}]))
    with pytest.raises(TLCMError, match=r"eval.json is not a list of score rows with steps, alignment, fd"):
        compare(run, teacher)


# ------------------------------------------------------------------------------- image grids


def test_save_grid_quantises_like_the_image_writers(tmp_path):
    """A mid-grey tensor (0 in [-1, 1]) is 127.5: rounded to 128 in the grid as in the PNGs the
    image writers make (tlcm.data.images), not truncated to 127."""
    from tlcm.data.images import _png
    from tlcm.images import save_grid

    path = save_grid(torch.zeros(1, 3, 64, 64), tmp_path / "grid.png", nrow=1)
    with Image.open(path) as grid:
        centre = grid.getpixel((grid.size[0] // 2, grid.size[1] // 2))
    with Image.open(io.BytesIO(_png(torch.zeros(3, 4, 4)))) as png:
        written = png.getpixel((1, 1))
    assert centre == written == (128, 128, 128)


# --------------------------------------------------------------------------------- toy data


def test_placed_digits_keep_the_label_of_image_i_mod_1797():
    """Documented: image i is digit i % 1797, whatever the placements and inks."""
    from sklearn.datasets import load_digits

    from tlcm.toy.data import load_digit_images

    x, y = load_digit_images(placements=2, inks=1)
    target = torch.tensor(load_digits().target)
    assert len(x) == len(y) == 2 * 1797
    assert torch.equal(y, target.repeat(2))


def test_jitter_of_strength_zero_is_the_identity():
    from tlcm.toy.data import augment

    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    out = augment(x, torch.Generator().manual_seed(1), strength=0.0)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_a_real_pair_subset_keeps_index_order():
    """Documented: a subset is the first n of a seed permutation, in index order; the white-ink
    digits (the first half of all) therefore come before the black-ink ones."""
    from tlcm.toy.data import real_pairs

    images, texts, rows = real_pairs(40, seed=3)
    inks = [r["ink"] for r in rows]
    assert "white" in inks and "black" in inks
    assert inks == sorted(inks, key=lambda ink: ink != "white")
    assert len(images) == len(texts) == 40


# ------------------------------------------------------------------------------ prompt files


def test_a_non_utf8_prompt_file_names_the_line_of_the_bad_byte(tmp_path):
    from tlcm.data.prompts import load_prompts

    path = tmp_path / "p.txt"
    path.write_bytes(b"a cat\na dog\na \xff bird\n")
    with pytest.raises(TLCMError, match=r"p\.txt:3 is not UTF-8 text \(byte 0xff"):
        load_prompts(path)


def test_a_prompt_starting_with_a_lone_surrogate_is_refused(tmp_path):
    from tlcm.data.prompts import load_prompts

    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a cat"}\n{"prompt": "\\ud800 a dog"}\n')
    with pytest.raises(TLCMError, match=r"p\.jsonl:2: the \"prompt\" holds a lone surrogate .*character 0"):
        load_prompts(path)


def test_a_jsonl_boolean_line_is_called_a_boolean(tmp_path):
    from tlcm.data.prompts import load_prompts

    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a cat"}\ntrue\n')
    with pytest.raises(TLCMError, match=r"p\.jsonl:2: .* found a JSON boolean"):
        load_prompts(path)


# ------------------------------------------------------------------------ real image sources


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _png_bytes(colour=(255, 0, 0)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_shard_reads_key_txt_over_key_caption(tmp_path):
    """Caption members in order of preference: .txt, .text, .caption."""
    from tlcm.data.images import ImageTextSource

    shard = _tar(
        tmp_path / "s.tar",
        {"0.png": _png_bytes(), "0.caption": b"from caption", "0.txt": b"from txt", "0.text": b"from text"},
    )
    assert ImageTextSource(shard, 8).text(0) == "from txt"
    shard = _tar(
        tmp_path / "t.tar", {"0.png": _png_bytes(), "0.caption": b"from caption", "0.text": b"from text"}
    )
    assert ImageTextSource(shard, 8).text(0) == "from text"


def test_a_metadata_line_of_spaces_is_blank(tmp_path):
    from tlcm.data.images import ImageTextSource

    folder = tmp_path / "imgs"
    _pngs(folder, [(0, 0, 0), (255, 255, 255)])
    lines = [
        json.dumps({"file_name": "0.png", "text": "a"}),
        "   \t",
        json.dumps({"file_name": "1.png", "text": "b"}),
    ]
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    source = ImageTextSource(folder, 8)
    assert len(source) == 2 and source.text(1) == "b"


def test_verify_reads_only_the_first_limit_samples(tmp_path):
    """--check --limit N reads N samples: a broken third image is not reached with N = 2 (nor is N
    past the end an error); without a limit it is reported."""
    from tlcm.data.images import ImageTextSource

    folder = tmp_path / "imgs"
    _pngs(folder, [(0, 0, 0), (255, 255, 255)])
    (folder / "2.png").write_bytes(b"not an image")
    lines = [json.dumps({"file_name": f"{k}.png", "text": str(k)}) for k in range(3)]
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    source = ImageTextSource(folder, 8)
    assert source.verify(limit=2) == 2
    assert source.verify(limit=1) == 1
    with pytest.raises(TLCMError, match="2.png"):
        source.verify()


def test_the_fingerprint_of_shards_rewritten_under_the_same_names_changes(tmp_path):
    """A resume compares the data's fingerprint: shards re-written with other samples under the same
    file names and count (another size: tar pads to 10 KiB records, so a longer caption) are other
    data."""
    from tlcm.data.images import ImageTextSource

    shard = _tar(tmp_path / "s.tar", {"0.png": _png_bytes(), "0.txt": b"a cat"})
    before = ImageTextSource(shard, 8).fingerprint()
    assert ImageTextSource(shard, 8).fingerprint() == before
    _tar(shard, {"0.png": _png_bytes((0, 0, 255)), "0.txt": b"a dog on a mat " * 2000})
    assert ImageTextSource(shard, 8).fingerprint() != before


class UnitEmbeddings:
    """An open_clip model stand-in: fixed raw embeddings, unit-normalised when asked."""

    def __init__(self, image: list[float], text: list[float]) -> None:
        self.image, self.text = torch.tensor([image]), torch.tensor([text])

    def _out(self, raw: torch.Tensor, n: int, normalize: bool) -> torch.Tensor:
        raw = raw.expand(n, -1)
        return torch.nn.functional.normalize(raw, dim=-1) if normalize else raw

    def encode_image(self, x: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return self._out(self.image, len(x), normalize)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return self._out(self.text, len(tokens), normalize)


@pytest.mark.parametrize(
    ("text", "cos"), [([3.0, 3.0, 0.0], 0.5**0.5), ([-5.0, 0.0, 0.0], -1.0), ([0.0, 0.0, 7.0], 0.0)]
)
def test_open_clip_scores_are_the_cosine_of_the_embeddings(monkeypatch, text, cos):
    """HPSv2.1 is the raw cosine of the image and text embeddings; the open_clip CLIP score is
    100 max(cos, 0) (worked by hand for embeddings at 45, 180 and 90 degrees)."""
    from tlcm.eval import metrics

    model = UnitEmbeddings([2.0, 0.0, 0.0], text)
    tokenizer = lambda prompts: torch.zeros(len(prompts), 4, dtype=torch.long)  # noqa: E731
    monkeypatch.setattr(metrics, "load_open_clip", lambda arch, file, field, device: (model, tokenizer, 32))
    images, prompts = [Image.new("RGB", (40, 32), "red")] * 2, ["a cat", "a dog"]
    hps = metrics.OpenClip("ViT-H-14", Path("hps.pt"), "hps", "cpu", hps=True)(images, prompts)
    clip = metrics.OpenClip("ViT-g-14", Path("clip.bin"), "clip", "cpu")(images, prompts)
    torch.testing.assert_close(hps, torch.full((2,), cos))
    torch.testing.assert_close(clip, torch.full((2,), 100 * max(cos, 0.0)))


def test_a_grid_label_as_long_as_the_width_stays_on_one_line():
    from tlcm.eval.table import _wrap

    assert _wrap("abc def", 7) == "abc def"
    assert _wrap("abc defg", 7) == "abc\ndefg"
    assert _wrap("tlcm-full, 4 steps", 22) == "tlcm-full, 4 steps"


def test_a_metadata_line_without_the_caption_column_is_named(tmp_path):
    """With caption_column "caption", a line holding only "text" is one line naming the file, the
    line and the missing field (not a KeyError)."""
    from tlcm.data.images import ImageTextSource

    folder = tmp_path / "imgs"
    _pngs(folder, [(0, 0, 0), (255, 255, 255)])
    lines = [
        json.dumps({"file_name": "0.png", "caption": "a"}),
        json.dumps({"file_name": "1.png", "text": "b"}),
    ]
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    match = r"metadata\.jsonl:2: 'caption' must be a non-empty string, found no 'caption' field "
    match += r"\(keys: file_name, text\)"
    with pytest.raises(TLCMError, match=match):
        ImageTextSource(folder, 8, caption_column="caption")
