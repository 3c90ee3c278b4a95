"""Real images in the sidecar caption layout (tlcm/data/images.py, layout "captions"): a folder of
images, each with its caption file beside it (``0001.png`` + ``0001.txt``: kohya sd-scripts,
OneTrainer), read in the sorted order of the images' relative paths, subfolders included, giving
the same samples as the metadata.jsonl folder of the same images; its refusals are one line, its
fingerprint covers names, sizes and caption bytes, and the engine trains on it."""

import json
import os

import pytest
import torch
from PIL import Image
from test_real_images import N, layouts, pairs, png_bytes, random_pairs  # noqa: F401 (fixtures)

from tlcm.data.images import (
    METADATA,
    ImageTextSource,
    encode_images,
    main,
    model_resolution,
    open_images,
    save_caption_folder,
    save_image_folder,
    write_miniature,
)
from tlcm.errors import TLCMError


def image(path, colour: str = "red", size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(Image.new("RGB", (size, size), colour)))


def sample(root, name: str, colour: str = "red", caption: str | bytes | None = None) -> None:
    """``root/name.png`` (a plain ``colour`` image) and, unless None, ``root/name.txt``."""
    image(root / f"{name}.png", colour)
    if caption is not None:
        data = caption if isinstance(caption, bytes) else caption.encode()
        (root / f"{name}.txt").write_bytes(data)


def colour_of(source: ImageTextSource, i: int) -> int:
    return int(source.image(i).mean((1, 2)).argmax())


# ------------------------------------------------------------------ reading
@pytest.fixture(scope="module")
def captions_folder(tmp_path_factory, pairs):  # noqa: F811
    """The N digits of ``layouts`` (seed 1) written in the sidecar layout by the miniature's writer."""
    return write_miniature(tmp_path_factory.mktemp("sidecar") / "digits", "captions", N, seed=1)


def test_the_sidecar_folder_equals_the_metadata_folder_of_the_same_images(
    layouts,  # noqa: F811
    captions_folder,
    pairs,  # noqa: F811
):
    """The miniature's digits as NAME.png + NAME.txt read back as the metadata.jsonl folder of the
    same digits does: the same captions and the same image tensors, in the same order."""
    images, texts, rows = pairs
    folder = layouts[0]
    a, b = ImageTextSource(folder, 32), ImageTextSource(captions_folder, 32)
    assert (a.layout, b.layout, len(b)) == ("folder", "captions", N)
    assert [b.text(i) for i in range(N)] == texts == [a.text(i) for i in range(N)]
    assert torch.equal(b.images(torch.arange(N)), a.images(torch.arange(N)))
    assert (b.image(5) - images[5]).abs().max() <= 0.5 / 127.5 + 1e-6
    assert b.describe(3) == str(captions_folder / "00003.png") and repr(b).endswith(f"{N} pairs, 32 px)")
    assert json.loads((captions_folder / "00007.json").read_text()) == rows[7]  # extra: KEY.json, unread
    assert b.verify() == N and b.fingerprint() != a.fingerprint()


def test_images_and_captions_are_read_in_sorted_order_with_subfolders(tmp_path):
    """Every subfolder is read (kohya's ``10_name/``, deeper ones too), in the sorted order of the
    relative POSIX paths, each image with the caption of its own stem; hidden files and folders,
    captions without an image and other files are skipped; extensions in any case pair."""
    sample(tmp_path, "b", "red", " red b \n")
    sample(tmp_path, "a", "lime", "lime a")
    sample(tmp_path / "10_char", "c", "blue", "blue c")
    sample(tmp_path / "2_style" / "deep", "d", "red", "red d")
    sample(tmp_path, "e.v2", "blue", "blue e")  # the stem is the name up to the last dot
    image(tmp_path / "F.PNG", "lime")
    (tmp_path / "F.TXT").write_text("lime F")
    sample(tmp_path / ".cache", "x", "red", "hidden folder")
    sample(tmp_path, ".y", "red", "hidden file")
    (tmp_path / "notes.txt").write_text("a caption without its image")
    (tmp_path / "a.json").write_text("{}")
    source = ImageTextSource(tmp_path, 8)
    order = ["10_char/c.png", "2_style/deep/d.png", "F.PNG", "a.png", "b.png", "e.v2.png"]
    assert source.layout == "captions" and len(source) == len(order)
    assert [source.describe(i) for i in range(len(source))] == [str(tmp_path / o) for o in order]
    assert [source.text(i) for i in range(len(source))] == [
        "blue c",
        "red d",
        "lime F",
        "lime a",
        "red b",
        "blue e",
    ]
    assert [colour_of(source, i) for i in range(len(source))] == [2, 0, 1, 1, 0, 2]


def test_a_linked_subfolder_is_read_and_a_link_loop_once(tmp_path):
    """A symbolic link to a concept folder elsewhere is followed; a link back up is not walked twice."""
    sample(tmp_path / "elsewhere", "x", "blue", "linked")
    root = tmp_path / "data"
    sample(root, "a", "red", "own")
    os.symlink(tmp_path / "elsewhere", root / "linked")
    os.symlink(root, root / "loop")
    source = ImageTextSource(root, 8)
    assert [source.text(i) for i in range(len(source))] == ["own", "linked"]


def test_a_subfolder_that_cannot_be_listed_is_refused_not_skipped(tmp_path, monkeypatch):
    """os.walk skips a folder it cannot list (permissions): its images would be left out unsaid."""
    sample(tmp_path, "a", "red", "a")
    sample(tmp_path / "locked", "b", "red", "b")
    scandir = os.scandir

    def denied(path):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", denied)
    one_line(tmp_path, r"cannot list .*locked \(Permission denied\): check its permissions")


def test_txt_is_preferred_over_text_and_caption(tmp_path):
    """NAME.txt, else NAME.text, else NAME.caption (TEXT_EXTENSIONS), whatever else is beside it."""
    sample(tmp_path, "a", "red")
    for ext in ("caption", "text", "txt"):
        (tmp_path / f"a.{ext}").write_text(f"a from {ext}")
    sample(tmp_path, "b", "red")
    for ext in ("caption", "text"):
        (tmp_path / f"b.{ext}").write_text(f"b from {ext}")
    sample(tmp_path, "c", "red")
    (tmp_path / "c.caption").write_text("c from caption")
    source = ImageTextSource(tmp_path, 8)
    assert [source.text(i) for i in range(3)] == ["a from txt", "b from text", "c from caption"]


def test_empty_captions_are_allowed_as_in_the_other_layouts(tmp_path):
    """An empty or blank caption file is an empty caption (clean_prompt), as an empty "text" in
    metadata.jsonl is; a UTF-8 byte order mark is dropped."""
    sample(tmp_path / "side", "a", "red", " \n\u200b")
    sample(tmp_path / "side", "b", "red", "\ufeffbom")
    sample(tmp_path / "meta", "a", "red")
    (tmp_path / "meta" / METADATA).write_text(json.dumps({"file_name": "a.png", "text": " "}) + "\n")
    side, meta = ImageTextSource(tmp_path / "side", 8), ImageTextSource(tmp_path / "meta", 8)
    assert [side.text(0), side.text(1)] == [meta.text(0), "bom"] == ["", "bom"]


def test_metadata_and_shards_take_precedence_over_sidecars(tmp_path):
    """A folder with metadata.jsonl is an image folder (its captions, not the sidecar files'); one
    with .tar files is a folder of shards."""
    sample(tmp_path, "a", "red", "sidecar")
    (tmp_path / METADATA).write_text(json.dumps({"file_name": "a.png", "text": "metadata"}) + "\n")
    source = ImageTextSource(tmp_path, 8)
    assert source.layout == "folder" and source.text(0) == "metadata"
    (tmp_path / METADATA).unlink()
    x, texts = random_pairs(2)
    from tlcm.data.images import save_shards

    save_shards(tmp_path / "s", x, texts)
    (tmp_path / "s" / "shard-000000.tar").rename(tmp_path / "shard.tar")
    source = ImageTextSource(tmp_path, 8)
    assert source.layout == "shards" and [source.text(i) for i in range(2)] == texts


# ------------------------------------------------------------------ refusals
def one_line(path, match: str, **kwargs) -> str:
    with pytest.raises(TLCMError, match=match) as err:
        ImageTextSource(path, 8, **kwargs)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_an_image_without_its_caption_file_is_refused_by_name(tmp_path):
    sample(tmp_path, "a", "red", "red")
    sample(tmp_path / "10_x", "z", "red")
    one_line(
        tmp_path,
        r"the image 10_x/z.png has no caption file \(10_x/z.txt\): add 10_x/z.txt \(its caption, UTF-8\) "
        r"beside it or move the image out of the folder",
    )


def test_many_images_without_captions_are_counted_and_a_few_named(tmp_path):
    sample(tmp_path, "a", "red", "red")
    for name in ("e", "d", "c", "b"):
        sample(tmp_path, name, "red")
    message = one_line(
        tmp_path,
        r"4 of 5 images have no caption file \(b.png, c.png, d.png, \.\.\.\): add NAME.txt .*beside each",
    )
    assert "e.png" not in message


def test_a_caption_file_that_is_not_utf8_is_refused(tmp_path):
    sample(tmp_path, "a", "red", "fine")
    sample(tmp_path, "b", "red", b"caf\xe9")
    one_line(tmp_path, r"the caption file .*b\.txt is not UTF-8 text \(offset 3\): re-save it as UTF-8")


def test_an_unreadable_caption_file_is_refused(tmp_path):
    sample(tmp_path, "a", "red")
    os.symlink(tmp_path / "gone.txt", tmp_path / "a.txt")  # a dangling link: listed, not readable
    sample(tmp_path, "b", "red", "b")
    one_line(tmp_path, r"cannot read the caption file .*a\.txt \(No such file or directory\): check its")


def test_a_folder_of_images_without_any_caption_names_the_sidecar_layout(tmp_path):
    """Images but no caption file at all: no layout; the message counts them and the hint names
    all three layouts; a sidecar folder among shards is refused as a metadata folder is."""
    image(tmp_path / "bare" / "a.png")
    image(tmp_path / "bare" / "sub" / "b.png")
    one_line(
        tmp_path / "bare",
        r"bare holds neither metadata.jsonl nor .tar shards \(2 image\(s\), none with a caption file "
        r"NAME.txt beside it\): pass --real a folder with metadata.jsonl .*, a folder of images with a "
        r"caption file beside each \(NAME.png \+ NAME.txt\) or webdataset .tar shards",
        flag="--real",
    )
    (tmp_path / "plain").mkdir()
    message = one_line(tmp_path / "plain", r"plain holds neither metadata.jsonl nor .tar shards: pass")
    assert "image(s)" not in message
    sample(tmp_path / "side", "a", "red", "a")
    with pytest.raises(
        TLCMError, match=r"side is an image folder \(captions beside its images\): pass it alone"
    ):
        ImageTextSource([tmp_path / "side"], 8)


def test_an_unreadable_image_says_to_move_it_out(tmp_path):
    sample(tmp_path, "a", "red", "a")
    (tmp_path / "b.png").write_bytes(b"not a png")
    (tmp_path / "b.txt").write_text("b")
    source = ImageTextSource(tmp_path, 8)
    with pytest.raises(
        TLCMError,
        match=r"cannot read the image .*b\.png \(not an image format PIL reads\): re-encode it as PNG / "
        r"JPEG, or move it and its caption file out of the folder",
    ):
        source.verify()


# ------------------------------------------------------------------ fingerprint
def test_the_fingerprint_covers_names_sizes_and_caption_bytes(tmp_path):
    """The same folder reopened: the same fingerprint. A caption changed (same length too), an image
    added, renamed or re-encoded to another size: another one."""
    for name, colour in (("a", "red"), ("b", "lime")):
        sample(tmp_path, name, colour, colour)
    fp = lambda: ImageTextSource(tmp_path, 8).fingerprint()  # noqa: E731
    first = fp()
    assert fp() == first and len(first) == 64
    seen = {first}

    def changed() -> None:
        now = fp()
        assert now not in seen
        seen.add(now)

    (tmp_path / "a.txt").write_text("tan")  # "red" -> "tan": same size, other bytes
    changed()
    (tmp_path / "a.txt").write_text("red")
    assert fp() == first
    (tmp_path / "b.txt").rename(tmp_path / "b.caption")  # the same caption, another file
    changed()
    (tmp_path / "b.caption").rename(tmp_path / "b.txt")
    image(tmp_path / "b.png", "lime", size=64)  # same name, another size
    changed()
    image(tmp_path / "b.png", "lime")
    assert fp() == first
    sample(tmp_path, "c", "blue", "blue")
    changed()
    (tmp_path / "c.png").rename(tmp_path / "d.png")
    (tmp_path / "c.txt").rename(tmp_path / "d.txt")
    changed()


def test_the_fingerprint_refuses_a_folder_changed_since_it_was_opened(tmp_path):
    sample(tmp_path, "a", "red", "red")
    source = ImageTextSource(tmp_path, 8)
    (tmp_path / "a.txt").unlink()
    with pytest.raises(TLCMError, match=r"cannot read .*a\.txt .*changed since .* was opened"):
        source.fingerprint()


# ------------------------------------------------------------------ writing and readers
def test_the_writer_and_cli_make_a_sidecar_folder(tmp_path, capsys):
    x, texts = random_pairs(3)
    out = save_caption_folder(tmp_path / "w", x, texts)
    assert sorted(p.name for p in out.iterdir()) == [f"0000{i}.{e}" for i in range(3) for e in ("png", "txt")]
    source = ImageTextSource(out, 16)
    assert [source.text(i) for i in range(3)] == texts
    assert all((source.image(i) - x[i]).abs().max() <= 0.5 / 127.5 + 1e-6 for i in range(3))
    with pytest.raises(TLCMError, match="not an empty folder"):
        save_caption_folder(out, x, texts)
    pytest.importorskip("sklearn")
    main(["--write-miniature", str(tmp_path / "m"), "--n", "6", "--layout", "captions"])
    main(["--check", str(tmp_path / "m")])
    out = capsys.readouterr().out
    assert "wrote 6 digits" in out and "read 6 sample(s)" in out
    with pytest.raises(ValueError, match="layout must be one of"):
        write_miniature(tmp_path / "n", "sidecar", 2)


def test_open_images_and_the_engine_train_on_a_sidecar_folder(captions_folder, tiny_sd_dir, tmp_path):
    """``open_images`` (the engine's and the trajectory cache's reader) opens the sidecar layout;
    the engine's prompts are its captions in sorted file order and the latents of a micro-batch's
    prompt indices are those of the same files' images."""
    from dataclasses import replace

    from engine_helpers import small_recipe

    from tlcm.engine import Trainer

    assert open_images(captions_folder, 32).layout == "captions"
    recipe = small_recipe(tiny_sd_dir, tmp_path, steps=1)
    trainer = Trainer(replace(recipe, data=replace(recipe.data, images=captions_folder, prompts=None)))
    files = sorted(captions_folder.glob("*.txt"))
    assert trainer.prompts == [f.read_text() for f in files] and len(files) == N
    picks = torch.tensor([7, 2, 7, N - 1, 0])
    source = ImageTextSource(captions_folder, model_resolution(trainer.base))
    one_by_one = torch.stack([source.image(i) for i in picks.tolist()])
    g = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    latents = trainer.phase_context.real_images(picks, g())
    assert torch.equal(latents, encode_images(trainer.base, one_by_one, g()))


def test_the_metadata_writer_output_is_not_mistaken_for_sidecars(tmp_path):
    """save_image_folder's folder stays an image folder (metadata.jsonl wins)."""
    x, texts = random_pairs(2)
    assert ImageTextSource(save_image_folder(tmp_path / "f", x, texts), 16).layout == "folder"


def test_a_trajectory_cache_is_built_from_a_sidecar_folders_captions(tiny_sd_dir, tmp_path):
    """tlcm.data.trajectories --images reads the sidecar layout as the run does (its captions, in
    sorted file order, an empty one included): the run's prompts open the cache."""
    from tlcm.data.trajectories import TrajectoryCache
    from tlcm.data.trajectories import cli as build
    from tlcm.models.base import BaseModel

    sample(tmp_path / "data" / "1_sub", "b", "lime", "")
    sample(tmp_path / "data", "a", "red", "a red square\n")
    out = tmp_path / "cache"
    flags = ["--model", str(tiny_sd_dir), "--out", str(out), "--device", "cpu", "--samples-per-prompt", "1"]
    build([*flags, "--images", str(tmp_path / "data"), "--num-milestones", "2"])
    base = BaseModel.load(tiny_sd_dir, device="cpu")
    cache = TrajectoryCache.open(out, base, ["", "a red square"], images=tmp_path / "data")
    assert cache.prompt_count.tolist() == [1, 1]
    with pytest.raises(TLCMError, match=f"--images {tmp_path / 'data'} --out"):
        TrajectoryCache.open(out, base, ["a red square", ""], images=tmp_path / "data")
