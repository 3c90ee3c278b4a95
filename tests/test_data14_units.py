"""Units of the data area from red-team round 14 (tlcm/data/images.py, trajectories.py, prompts.py):
the real-image source's opening (a byte-order mark, a folder as file_name, the caption-column hint
of the first line only, a leftover .tar.partial, .webp members and the jpg preference, an oversized
image, the fingerprint of the captions), the VAE's slices, the writers' and the CLI's refusals; the
trajectory cache's flow refusal, rebuild command, format and dtype checks, the prompt-list
difference, float32 states and the CLI's checks; the prompts' cleaning and JSON type names."""

from __future__ import annotations

import io
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from test_evaldata_units import _tar

from tlcm.data import images as images_module
from tlcm.data.images import METADATA, ImageTextSource, encode_images, main, save_image_folder, save_shards
from tlcm.data.prompts import clean_prompt, load_prompts
from tlcm.data.trajectories import (
    CacheArgs,
    TrajectoryCache,
    build_cache,
    check_cache_args,
    rebuild_command,
    trajectory_grid,
)
from tlcm.diffusion.schedule import FlowSchedule
from tlcm.errors import TLCMError
from tlcm.models.base import BaseModel

PROMPTS = ["a red cube", "two blue spheres"]
M, K, W = 2, 250, 3.0


def _png(colour, size=(8, 8), fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=fmt)
    return buffer.getvalue()


def _folder(root: Path, rows: list[dict], text: str | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, colour in (("0.png", "red"), ("1.png", "blue")):
        (root / name).write_bytes(_png(colour))
    body = text if text is not None else "".join(json.dumps(r) + "\n" for r in rows)
    (root / METADATA).write_text(body, encoding="utf-8")
    return root


# ------------------------------------------------------------------ images: opening
def test_a_metadata_file_with_a_byte_order_mark_opens(tmp_path):
    """Windows editors save metadata.jsonl with a UTF-8 byte-order mark: the first line is still JSON."""
    rows = [{"file_name": "0.png", "text": "red"}, {"file_name": "1.png", "text": "blue"}]
    folder = _folder(tmp_path, rows, "\ufeff" + "".join(json.dumps(r) + "\n" for r in rows))
    source = ImageTextSource(folder, 8)
    assert len(source) == 2 and [source.text(0), source.text(1)] == ["red", "blue"]


def test_a_file_name_naming_a_folder_is_refused_when_opened(tmp_path):
    """file_name must be a file: a folder of that name is refused at open, naming the line, not
    mid-run when its image is read."""
    rows = [{"file_name": "0.png", "text": "red"}, {"file_name": "sub", "text": "a folder"}]
    folder = _folder(tmp_path, rows)
    (folder / "sub").mkdir()
    with pytest.raises(TLCMError, match=r"metadata.jsonl:2: file_name 'sub' does not exist"):
        ImageTextSource(folder, 8)


def test_the_caption_column_hint_is_for_the_first_line_only(tmp_path):
    """A first line without the caption column but with another string field suggests that field's
    --recipes.data.caption-column; a later line without it (the earlier lines had it) keeps the
    instruction to write the field, not to switch columns."""
    first = _folder(tmp_path / "a", [{"file_name": "0.png", "caption": "red"}])
    with pytest.raises(TLCMError, match=r"pass --recipes.data.caption-column caption"):
        ImageTextSource(first, 8)
    later = _folder(
        tmp_path / "b", [{"file_name": "0.png", "text": "red"}, {"file_name": "1.png", "caption": "blue"}]
    )
    with pytest.raises(TLCMError) as err:
        ImageTextSource(later, 8)
    message = str(err.value)
    assert "metadata.jsonl:2:" in message and "caption-column" not in message
    assert message.endswith('write one {"file_name": "IMAGE", "text": "CAPTION"} per line')


def test_a_folder_of_shards_ignores_a_leftover_partial_shard(tmp_path):
    """A shard writer interrupted leaves shard-N.tar.partial beside the complete shards: the folder
    holds the complete shards' samples only."""
    x = torch.rand(3, 3, 8, 8) * 2 - 1
    shards = save_shards(tmp_path / "s", x, ["a", "b", "c"], per_shard=2)
    shutil.copy(shards[0], shards[0].parent / "shard-000002.tar.partial")
    source = ImageTextSource(tmp_path / "s", 8)
    assert source.shards == shards and len(source) == 3
    assert [source.text(i) for i in range(3)] == ["a", "b", "c"]


def test_webp_members_are_images_and_jpg_is_preferred(tmp_path):
    """KEY.webp + KEY.txt is a sample; a key with both KEY.jpg and KEY.png reads the jpg (diffusers'
    LCM scripts: ``wds.rename(image="jpg;png;jpeg;webp")``)."""
    shard = _tar(
        tmp_path / "a.tar",
        {
            "a.webp": _png("red", fmt="WEBP"),
            "a.txt": b"red",
            "b.png": _png("blue"),
            "b.jpg": _png("white", fmt="JPEG"),
            "b.txt": b"white",
        },
    )
    source = ImageTextSource(shard, 8)
    assert len(source) == 2 and [source.text(0), source.text(1)] == ["red", "white"]
    assert source.image(0).mean((1, 2)).argmax() == 0
    assert source.image(1).min() > 0.9  # the white jpg, not the blue png


def test_an_oversized_image_is_a_one_line_refusal(tmp_path, monkeypatch):
    """PIL refuses an image of more than twice MAX_IMAGE_PIXELS (DecompressionBombError): that is an
    unreadable image named in one line, like a broken one."""
    folder = _folder(tmp_path, [{"file_name": "0.png", "text": "red"}])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20)  # 8 x 8 = 64 > 2 x 20
    with pytest.raises(TLCMError, match=r"cannot read the image .*0\.png .*re-encode it"):
        ImageTextSource(folder, 8).image(0)


def test_the_fingerprint_of_an_image_folder_follows_its_captions(tmp_path):
    """A caption edited in metadata.jsonl (same images, same count) is other data: another
    fingerprint, so a resume sees it."""
    folder = _folder(tmp_path, [{"file_name": "0.png", "text": "red"}])
    before = ImageTextSource(folder, 8).fingerprint()
    assert ImageTextSource(folder, 8).fingerprint() == before
    _folder(tmp_path, [{"file_name": "0.png", "text": "a red square"}])
    assert ImageTextSource(folder, 8).fingerprint() != before


@pytest.fixture(scope="module")
def base(tiny_sd_dir):
    return BaseModel.load(tiny_sd_dir)


def test_images_larger_than_a_slice_are_encoded_one_at_a_time(base, monkeypatch):
    """The VAE encodes at most _ENCODE_PIXELS input pixels a call, and at least one image: with a
    limit below one image's pixels each image is its own call, the latents equal to one call's."""
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    whole = encode_images(base, x, sample=False)
    calls = []
    encode = base.pipe.vae.encode
    monkeypatch.setattr(base.pipe.vae, "encode", lambda chunk: calls.append(len(chunk)) or encode(chunk))
    monkeypatch.setattr(images_module, "_ENCODE_PIXELS", 32 * 32 - 1)
    sliced = encode_images(base, x, sample=False)
    assert calls == [1, 1, 1] and torch.allclose(sliced, whole, atol=1e-5)


def test_the_writers_refuse_an_existing_file(tmp_path):
    (tmp_path / "taken").write_text("mine")
    x = torch.zeros(1, 3, 8, 8)
    for write in (save_image_folder, save_shards):
        with pytest.raises(TLCMError, match="taken exists and is not an empty folder"):
            write(tmp_path / "taken", x, ["a"])
    assert (tmp_path / "taken").read_text() == "mine"


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_the_check_commands_limit_below_one_is_refused(tmp_path, limit, capsys):
    folder = _folder(tmp_path, [{"file_name": "0.png", "text": "red"}])
    with pytest.raises(TLCMError, match=f"--limit must be >= 1, got {limit}"):
        main(["--check", str(folder), "--limit", limit])
    assert "read" not in capsys.readouterr().out


# ------------------------------------------------------------------ trajectories
def test_a_flow_schedule_has_no_trajectory_grid():
    with pytest.raises(ValueError, match="flow models use states mds"):
        trajectory_grid(FlowSchedule(), 2, 250)


def test_the_rebuild_command_keeps_a_guidance_scale_of_zero():
    """w = 0 is a value (the unconditional teacher), not "not given": the rebuild command names it."""
    command = rebuild_command("m", Path("c"), None, 2, 250, 0.0)
    assert command.endswith("--out c --num-milestones 2 --skip 250 --guidance-scale 0.0")
    assert rebuild_command("m", Path("c"), None).endswith("--model m --out c")


def test_a_shard_size_of_zero_is_refused_before_the_folder_is_made(base, tmp_path):
    with pytest.raises(TLCMError, match="--shard-size"):
        build_cache(base, PROMPTS, tmp_path / "new", 1, M, K, W, shard_size=0)
    assert not (tmp_path / "new").exists()


@pytest.fixture(scope="module")
def cache16(base, tmp_path_factory):
    """2 prompts x 1 trajectory in float16 (the CLI's default dtype), one shard."""
    out = tmp_path_factory.mktemp("cache16")
    build_cache(base, PROMPTS, out, 1, M, K, W, seed=3)
    return out


def test_states_are_stored_in_the_asked_dtype_and_read_as_float32(base, cache16, tmp_path):
    """A float16 cache stores float16 and hands out float32 states; a float32 build stores float32."""
    with safe_open(cache16 / "shard-00000.safetensors", framework="pt") as handle:
        assert handle.get_slice("states").get_dtype() == "F16"
    drawn = TrajectoryCache.open(cache16, base, PROMPTS, M, K, W).sample(
        torch.tensor([0, 1]), torch.Generator().manual_seed(0)
    )
    assert drawn.x_tm.dtype == drawn.x_tn.dtype == torch.float32
    out = tmp_path / "c32"
    build_cache(base, PROMPTS, out, 1, M, K, W, seed=3, dtype="float32")
    with safe_open(out / "shard-00000.safetensors", framework="pt") as handle:
        assert handle.get_slice("states").get_dtype() == "F32"


def _refusal(folder: Path, base, prompts=PROMPTS, **manifest_changes) -> str:
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, **manifest_changes}))
    try:
        with pytest.raises(TLCMError) as err:
            TrajectoryCache.open(folder, base, prompts, M, K, W)
    finally:
        (folder / "manifest.json").write_text(json.dumps(manifest))
    return str(err.value)


def test_another_format_version_or_storage_dtype_is_refused(base, cache16, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(cache16, folder)
    message = _refusal(folder, base, version=2)
    assert "format differs" in message and "found ('tlcm-trajectories', 2)" in message
    message = _refusal(folder, base, dtype="float8")
    assert "format differs" in message and "in float8" in message
    TrajectoryCache.open(folder, base, PROMPTS, M, K, W)  # restored: opens


def test_a_prompt_list_extending_the_caches_names_the_first_extra_prompt(base, cache16):
    """Run prompts [a, b, c] against a cache of [a, b]: the first difference is #2, 'c' against none."""
    with pytest.raises(TLCMError) as err:
        TrajectoryCache.open(cache16, base, [*PROMPTS, "a third"], M, K, W)
    assert "expected 3 prompts, #2 = ['a third'], found 2 prompts, #2 = []" in str(err.value)


def test_the_cli_checks_refuse_a_nan_guidance_scale_and_take_m_equal_t(tiny_sd_dir, tmp_path):
    with pytest.raises(TLCMError, match="--guidance-scale must be a finite number, got nan"):
        check_cache_args(CacheArgs(model=tiny_sd_dir, guidance_scale=math.nan, out=tmp_path / "a"))
    check_cache_args(CacheArgs(model=tiny_sd_dir, num_milestones=1000, skip=1, out=tmp_path / "b"))
    with pytest.raises(TLCMError, match="--num-milestones 1001 must be in 1..1000"):
        check_cache_args(CacheArgs(model=tiny_sd_dir, num_milestones=1001, skip=1, out=tmp_path / "c"))


# ------------------------------------------------------------------ prompts
def test_every_zero_width_character_is_cleaned_from_a_prompts_ends():
    for c in "\u200b\u200c\u200d\u2060\ufeff":
        assert clean_prompt(f"{c} a red cube {c}\n") == "a red cube", repr(c)


def test_a_jsonl_number_line_is_called_a_number(tmp_path):
    for value in ("3.5", "7"):
        (tmp_path / "p.jsonl").write_text(f'{{"prompt": "a"}}\n{value}\n')
        with pytest.raises(TLCMError, match=r"p.jsonl:2: .* found a JSON number"):
            load_prompts(tmp_path / "p.jsonl")
