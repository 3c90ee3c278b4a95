"""Real image-text pairs (tlcm/data/images.py): the image folder (metadata.jsonl) and webdataset
shard layouts give the same samples, every bad input is one line, and real latents are the inverse
of the model's decode. (Which samples a step uses is the engine's prompt draw: the loss contract's
"mlcd-data" case checks resume, 2 processes, checkpointing, bf16 and FSDP2 with real images.)"""

import io
import json
import tarfile

import pytest
import torch
from PIL import Image

from tlcm.data.images import (
    METADATA,
    ImageTextSource,
    encode_images,
    expand_braces,
    main,
    model_resolution,
    real_latents,
    save_image_folder,
    save_shards,
)
from tlcm.errors import TLCMError
from tlcm.toy.data import prompt_for

N = 40
"""Miniature digits written by the fixtures (a seeded subset of the 3594, both inks)."""


@pytest.fixture(scope="module")
def pairs():
    """The miniature's real pairs (N of them), as the build's data makes them."""
    pytest.importorskip("sklearn")
    from tlcm.toy.data import real_pairs

    return real_pairs(N, seed=1)


@pytest.fixture(scope="module")
def layouts(tmp_path_factory, pairs):
    """The same N digits written as an image folder and as 3 shards (16 + 16 + 8), by the
    miniature's writers."""
    from tlcm.data.images import write_miniature

    root = tmp_path_factory.mktemp("real")
    folder = write_miniature(root / "folder", "folder", N, seed=1)
    shards = write_miniature(root / "shards", "shards", N, per_shard=16, seed=1)
    return folder, shards


def random_pairs(n: int, size: int = 16, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1, [f"caption {i}" for i in range(n)]


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_tar(path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


# ------------------------------------------------------------------ layouts
def test_folder_and_shards_hold_the_miniature_pairs(layouts, pairs):
    """Both layouts give back exactly the digits and captions the miniature trains on (PNG: 8-bit
    quantised, so within half a grey level), in the same order, each caption with its own image."""
    images, texts, rows = pairs
    folder, shards = layouts
    assert (folder / METADATA).is_file() and [s.name for s in shards] == [
        f"shard-00000{i}.tar" for i in range(3)
    ]
    meta = [json.loads(line) for line in (folder / METADATA).read_text().splitlines()]
    assert [m["text"] for m in meta] == texts and [m["digit"] for m in meta] == [r["digit"] for r in rows]
    a, b = ImageTextSource(folder, 32), ImageTextSource(shards[0].parent, 32)
    assert (a.layout, b.layout, len(a), len(b)) == ("folder", "shards", N, N)
    for i in range(N):
        (xa, ta), (xb, tb) = a[i], b[i]
        assert torch.equal(xa, xb) and ta == tb == texts[i], i
        assert (xa - images[i]).abs().max() <= 0.5 / 127.5 + 1e-6, i
    assert {r["ink"] for r in rows} == {"white", "black"}
    picks = torch.tensor([3, 0, 3, 17, N - 1])
    assert torch.equal(a.images(picks), b.images(picks)) and a.images(picks[:0]).shape == (0, 3, 32, 32)


def test_captions_name_the_digit_of_their_image(layouts, pairs):
    """Pairing: every caption asks for the digit its own image shows (the metadata's digit, which
    the miniature's data labels), across shard boundaries too."""
    _, _, rows = pairs
    from tlcm.toy.data import DIGIT_WORDS, TEMPLATES

    source = ImageTextSource(layouts[1], 32)
    for i in range(N):
        digit = rows[i]["digit"]
        allowed = {prompt_for(digit, k) for k in range(len(TEMPLATES))}
        assert source.text(i) in allowed, (i, source.text(i), DIGIT_WORDS[digit])


def test_shard_members_pair_by_key_in_any_order(tmp_path):
    """Members are grouped by key (name up to the first dot), whatever their order in the tar;
    other members (KEY.json, KEY.seg.png) are ignored; .jpg / .jpeg / .webp / .caption count."""
    red, green, blue = (png_bytes(Image.new("RGB", (8, 8), c)) for c in ("red", "lime", "blue"))
    jpeg = io.BytesIO()
    Image.new("RGB", (8, 8), "white").save(jpeg, format="JPEG", quality=100)
    write_tar(
        tmp_path / "a.tar",
        [
            ("x/b.txt", b"green"),
            ("x/a.png", red),
            ("x/c.caption", b"blue"),
            ("x/b.png", green),
            ("x/a.json", b"{}"),
            ("x/a.txt", b" red\n"),
            ("x/c.png", blue),
            ("x/c.seg.png", red),
            ("x/d.jpg", jpeg.getvalue()),
            ("x/d.txt", "wei\u00df".encode()),
        ],
    )
    source = ImageTextSource(tmp_path / "a.tar", 8)
    assert [source.text(i) for i in range(len(source))] == ["green", "red", "blue", "wei\u00df"]
    means = [source.image(i).mean((1, 2)) for i in range(3)]
    assert means[0].argmax() == 1 and means[1].argmax() == 0 and means[2].argmax() == 2
    assert source.image(3).min() > 0.95


def test_images_are_resized_on_the_shorter_side_and_centre_cropped(tmp_path):
    """A 64 x 32 image (red | green | green | blue quarters) at 16 px: shorter side 32 -> 16
    (antialiased), centre 16 x 16 kept: green, the red and blue quarters cropped away. Grey and RGBA
    images come back RGB."""
    wide = Image.new("RGB", (64, 32), "lime")
    wide.paste(Image.new("RGB", (16, 32), "red"), (0, 0))
    wide.paste(Image.new("RGB", (16, 32), "blue"), (48, 0))
    grey = Image.new("L", (20, 20), 128)
    rgba = Image.new("RGBA", (16, 16), (255, 0, 0, 255))
    for name, image in (("wide.png", wide), ("grey.png", grey), ("rgba.png", rgba)):
        image.save(tmp_path / name)
    lines = [{"file_name": n, "text": n} for n in ("wide.png", "grey.png", "rgba.png")]
    (tmp_path / METADATA).write_text("\n".join(json.dumps(r) for r in lines) + "\n\n")
    source = ImageTextSource(tmp_path, 16)
    x = source.image(0)
    assert x.shape == (3, 16, 16)
    assert torch.allclose(x[:, :, 1:-1], torch.tensor([-1.0, 1.0, -1.0])[:, None, None], atol=1e-4)
    assert x[0, :, 0].max() < 0 and x[2, :, -1].max() < 0  # at most a blend at the edge columns
    assert source.image(1).shape == (3, 16, 16) and torch.allclose(
        source.image(1), torch.tensor(128 / 127.5 - 1), atol=1e-6
    )
    assert torch.equal(source.image(2)[0], torch.ones(16, 16)) and source.image(2)[1:].max() == -1


def test_a_caption_holding_a_unicode_line_separator_is_one_record(tmp_path):
    """metadata.jsonl is JSON Lines (lines end at \\n); a caption may hold U+2028 / U+2029 / U+0085
    raw, as json.dumps(..., ensure_ascii=False) writes them. Each record stays one record with its
    caption whole (str.splitlines would cut it in two: "not JSON")."""
    Image.new("RGB", (4, 4), "white").save(tmp_path / "a.png")
    captions = ["a line\u2028separator", "a paragraph\u2029separator", "a next\x85line"]
    rows = [{"file_name": "a.png", "text": c} for c in captions]
    (tmp_path / METADATA).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    source = ImageTextSource(tmp_path, 4)
    assert [source.text(i) for i in range(len(source))] == captions


def test_a_photos_exif_orientation_is_applied(tmp_path):
    """Cameras store a portrait photo as landscape pixels plus an EXIF orientation tag; a reader
    must show it upright. An 8 x 4 PNG (left half black, right half white) tagged orientation 6
    ("rotate 90 degrees clockwise to display") is upright 4 x 8 with the black half on top: at 4 px
    (no resize) its centre crop (rows 2..5) has black rows 0-1 and white rows 2-3. Read as stored,
    it would have black columns instead."""
    photo = Image.new("RGB", (8, 4), "white")
    photo.paste(Image.new("RGB", (4, 4), "black"), (0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    photo.save(tmp_path / "photo.png", exif=exif)
    (tmp_path / METADATA).write_text(json.dumps({"file_name": "photo.png", "text": "a photo"}) + "\n")
    x = ImageTextSource(tmp_path, 4).image(0)
    assert x.shape == (3, 4, 4)
    assert torch.equal(x[:, :2], -torch.ones(3, 2, 4)) and torch.equal(x[:, 2:], torch.ones(3, 2, 4))


def test_shard_patterns_globs_and_lists(layouts):
    shards = layouts[1]
    folder = shards[0].parent
    assert expand_braces("s-{08..10}.tar") == ["s-08.tar", "s-09.tar", "s-10.tar"]
    assert expand_braces("{1..2}-{0..1}") == ["1-0", "1-1", "2-0", "2-1"]
    whole = ImageTextSource(folder, 32)
    for form in (
        str(folder / "shard-{000000..000002}.tar"),
        str(folder / "*.tar"),
        [str(s) for s in shards],
    ):
        other = ImageTextSource(form, 32)
        assert len(other) == N and other.fingerprint() == whole.fingerprint()
        assert torch.equal(other.images(torch.arange(N)), whole.images(torch.arange(N)))
    assert len(ImageTextSource(shards[2], 32)) == N - 32


# ------------------------------------------------------------------ bad inputs
def folder_with(tmp_path, *lines: str, images: int = 2):
    x, _ = random_pairs(images)
    for i in range(images):
        (tmp_path / f"{i}.png").write_bytes(png_bytes(Image.new("RGB", (16, 16), (i * 40, 0, 0))))
    (tmp_path / METADATA).write_text("\n".join(lines) + "\n")
    return tmp_path


GOOD = json.dumps({"file_name": "0.png", "text": "zero"})


@pytest.mark.parametrize(
    "lines, match",
    [
        (
            (GOOD, json.dumps({"text": "one"})),
            r"metadata.jsonl:2: 'file_name' must be a non-empty string, "
            r"found no 'file_name' field \(keys: text\)",
        ),
        (
            (GOOD, json.dumps({"file_name": "1.png"})),
            r"metadata.jsonl:2: 'text' must be a non-empty string, found no 'text' field",
        ),
        (
            (json.dumps({"file_name": "0.png", "text": 3}),),
            r"metadata.jsonl:1: 'text' must be .* found 'text': 3",
        ),
        (
            (GOOD, "", json.dumps({"file_name": "nope.png", "text": "x"})),
            r"metadata.jsonl:3: file_name 'nope.png' does not exist .*relative to the folder",
        ),
        (("{oops",), r"metadata.jsonl:1: not JSON"),
        (("[1, 2]",), r"metadata.jsonl:1: expected a JSON object"),
        (("",), r"metadata.jsonl holds no image-text pairs"),
    ],
)
def test_bad_metadata_is_one_line_naming_file_and_line(tmp_path, lines, match):
    with pytest.raises(TLCMError, match=match) as err:
        ImageTextSource(folder_with(tmp_path, *lines), 16)
    assert "\n" not in str(err.value)


def test_missing_and_empty_paths(tmp_path):
    cases = [
        (
            tmp_path / "absent",
            r"real image path .*absent does not exist: "
            r"pass --recipes.data.real-images a folder with metadata.jsonl",
        ),
        (str(tmp_path / "none-*.tar"), r"no file matches .*none-\*\.tar"),
        (tmp_path / "x.tar.gz", r"is compressed: shards must be plain .tar"),
        (tmp_path / "notes.txt", r"neither a folder nor a .tar shard"),
    ]
    (tmp_path / "x.tar.gz").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hi")
    for path, match in cases:
        with pytest.raises(TLCMError, match=match):
            ImageTextSource(path, 16)
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    (empty / "train" / METADATA).write_text(GOOD)
    (empty / "metadata.csv").write_text("file_name,text\n")
    with pytest.raises(
        TLCMError,
        match=r"holds neither metadata.jsonl nor .tar shards "
        r"\(.*train.metadata.jsonl exists: pass .*train\) \(metadata.csv is not read",
    ):
        ImageTextSource(empty, 16, flag="--real")
    with pytest.raises(TLCMError, match=r"train is an image folder \(metadata.jsonl\): pass it alone"):
        ImageTextSource([empty / "train"], 16)
    with pytest.raises(TLCMError, match="positive integer"):
        ImageTextSource(empty / "train", 0)


def test_unreadable_image_named_when_read(tmp_path):
    folder = folder_with(tmp_path, GOOD, json.dumps({"file_name": "1.png", "text": "one"}))
    (folder / "1.png").write_bytes(b"not a png at all")
    source = ImageTextSource(folder, 16)  # opening stats files; reading decodes them
    assert source.image(0).shape == (3, 16, 16)
    with pytest.raises(
        TLCMError,
        match=r"cannot read the image .*1\.png \(not an image format PIL reads\): "
        r"re-encode it as PNG / JPEG, or fix its line in metadata.jsonl",
    ):
        source.verify()


def test_bad_shards(tmp_path):
    red = png_bytes(Image.new("RGB", (8, 8), "red"))
    write_tar(tmp_path / "lonely.tar", [("a.png", red), ("a.txt", b"a"), ("b.png", red)])
    with pytest.raises(
        TLCMError, match=r"lonely.tar: b.png has no caption \(b.txt\): every image needs b.txt"
    ):
        ImageTextSource(tmp_path / "lonely.tar", 8)
    write_tar(tmp_path / "caption.tar", [("a.txt", b"a")])
    with pytest.raises(TLCMError, match=r"caption.tar: a.txt has no image \(a.jpg\|png\|jpeg\|webp\)"):
        ImageTextSource(tmp_path / "caption.tar", 8)
    (tmp_path / "junk.tar").write_bytes(b"\x01" * 3000)
    with pytest.raises(TLCMError, match=r"junk.tar is not a readable uncompressed tar"):
        ImageTextSource(tmp_path / "junk.tar", 8)
    write_tar(tmp_path / "broken.tar", [("a.png", b"\x89PNG broken"), ("a.txt", b"a")])
    with pytest.raises(
        TLCMError, match=r"cannot read the image .*broken.tar:a.png .*leave it out of the shard"
    ):
        ImageTextSource(tmp_path / "broken.tar", 8).verify()
    write_tar(tmp_path / "latin.tar", [("a.png", red), ("a.txt", b"caf\xe9")])
    with pytest.raises(TLCMError, match=r"caption of .*latin.tar:a.png .*UTF-8"):
        ImageTextSource(tmp_path / "latin.tar", 8).text(0)
    write_tar(tmp_path / "whole.tar", [("a.png", red * 3), ("a.txt", b"a")])
    data = (tmp_path / "whole.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[: 512 + len(red)])  # the image's data cut short
    with pytest.raises(
        TLCMError, match=r"cut.tar is not a readable uncompressed tar \(unexpected end of data\)"
    ):
        ImageTextSource(tmp_path / "cut.tar", 8)
    source = ImageTextSource(tmp_path / "whole.tar", 8)
    (tmp_path / "whole.tar").write_bytes(data[: 512 + len(red)])  # cut after it was indexed
    with pytest.raises(TLCMError, match=r"whole.tar:a.png \(.* bytes missing: the shard is truncated\)"):
        source.image(0)


def test_writers_refuse_a_non_empty_folder(tmp_path):
    x, texts = random_pairs(3)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("mine")
    for write in (save_image_folder, save_shards):
        with pytest.raises(TLCMError, match="exists and is not an empty folder"):
            write(tmp_path / "used", x, texts)
    assert (tmp_path / "used" / "keep.txt").read_text() == "mine"


def test_generic_writers_round_trip_random_images(tmp_path):
    """Any (N, 3, H, W) in [-1, 1]: both writers read back within half an 8-bit level, same order."""
    x, texts = random_pairs(7)
    a = ImageTextSource(save_image_folder(tmp_path / "f", x, texts), 16)
    b = ImageTextSource(save_shards(tmp_path / "s", x, texts, per_shard=3)[0].parent, 16)
    for i in range(7):
        assert (a.image(i) - x[i]).abs().max() <= 0.5 / 127.5 + 1e-6
        assert torch.equal(a.image(i), b.image(i)) and a.text(i) == b.text(i) == texts[i]
    assert not list((tmp_path / "s").glob("*.partial")) and not list((tmp_path / "f").glob("*.partial"))


# ------------------------------------------------------------------ latents
@pytest.fixture(scope="module")
def miniature():
    from tlcm.models.base import BaseModel
    from tlcm.toy import MINIATURE_SD

    return BaseModel.load(MINIATURE_SD)


def test_latents_invert_the_miniature_decode(layouts, miniature):
    """On the miniature's VAE (build: reconstruction MSE 0.0030 on [-1, 1] digits) real latents
    decode back to their images: mode MSE ~0.0028 on these digits (bound 0.005, worst image
    < 0.012), sampled ~0.0036 (bound 0.006); the modes have std ~1 (the build's scaling factor)."""
    base = miniature
    source = ImageTextSource(layouts[0], model_resolution(base))
    assert model_resolution(base) == 32
    picks = torch.randint(N, (64,), generator=torch.Generator().manual_seed(0))
    images = source.images(picks)
    z = encode_images(base, images, sample=False)
    assert z.shape == (64, *base.latent_shape) and z.dtype == torch.float32
    assert 0.85 < z.std() < 1.15
    err = (base.decode(z) - images).square().flatten(1).mean(1)
    assert err.mean() < 0.005 and err.max() < 0.012
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    sampled = encode_images(base, images, g())
    assert torch.equal(sampled, encode_images(base, images, g())) and not torch.equal(sampled, z)
    assert (base.decode(sampled) - images).square().mean() < 0.006
    # the exact formula: (z - shift) * scaling_factor, the inverse of decode's z / scaling + shift
    vae = base.pipe.vae
    direct = vae.encode(images).latent_dist.mode() * vae.config.scaling_factor  # the same batch: torch
    assert torch.allclose(z, direct, atol=1e-6)  # 2.9's CPU convolutions may round by batch size
    assert torch.equal(real_latents(base, source, picks[32:], g()), encode_images(base, images[32:], g()))


def test_sampled_latents_draw_fp32_noise_whatever_the_vae_dtype(layouts, miniature):
    """With bf16 frozen weights (the miniature's VAE is a force_upcast one: fp32 under bf16
    autocast, its posterior bf16) the sampled latents are (mode + std * eps) * scaling in fp32, eps
    an fp32 draw of the generator: the fp32 run's draw, so bf16 and fp32 runs train on the same
    noise. diffusers' ``sample()`` draws eps in bf16 and adds in bf16 (the exact formula then off by
    bf16 rounding); torch <= 2.11's CPU draws bf16 normals from another stream."""
    from tlcm.models.base import BaseModel
    from tlcm.toy import MINIATURE_SD

    images = ImageTextSource(layouts[0], 32).images(torch.arange(32))
    base16 = BaseModel.load(MINIATURE_SD, dtype=torch.bfloat16)
    vae = base16.pipe.vae
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    sampled = encode_images(base16, images, g())
    with base16.autocast():
        posterior = vae.encode(images.to(vae.dtype)).latent_dist
    assert posterior.mean.dtype == torch.bfloat16
    eps = torch.randn(sampled.shape, generator=g())
    exact = (posterior.mean.float() + posterior.std.float() * eps) * vae.config.scaling_factor
    assert sampled.dtype == torch.float32 and torch.allclose(sampled, exact, rtol=1e-6, atol=1e-6)
    fp32 = encode_images(miniature, images, g())
    assert (sampled - fp32).norm() / fp32.norm() < 0.03  # the bf16 VAE's rounding (measured 0.01)


def test_latents_honour_the_vae_shift_factor(layouts, miniature):
    """With a shift factor (SD3 / FLUX VAEs) the latents move by -shift * scaling and decode still
    inverts them."""
    base, vae = miniature, miniature.pipe.vae
    images = ImageTextSource(layouts[0], 32).images(torch.arange(8))
    plain = encode_images(base, images, sample=False)
    back = base.decode(plain)
    vae.register_to_config(shift_factor=0.25)
    try:
        shifted = encode_images(base, images, sample=False)
        assert torch.allclose(shifted, plain - 0.25 * vae.config.scaling_factor, atol=1e-5)
        assert torch.allclose(base.decode(shifted), back, atol=1e-5)
    finally:
        vae.register_to_config(shift_factor=None)


def test_real_latents_refuse_another_resolution(layouts, miniature):
    with pytest.raises(TLCMError, match="read at 16 px but the model trains at 32 px"):
        real_latents(miniature, ImageTextSource(layouts[0], 16), torch.arange(4))


# ------------------------------------------------------------------ CLI
def test_cli_writes_and_checks_the_miniature(tmp_path, capsys):
    pytest.importorskip("sklearn")
    main(["--write-miniature", str(tmp_path / "f"), "--n", "12"])
    main(["--write-miniature", str(tmp_path / "s"), "--n", "12", "--layout", "shards", "--per-shard", "5"])
    main(["--check", str(tmp_path / "f")])
    main(["--check", str(tmp_path / "s" / "shard-{000000..000002}.tar")])
    out = capsys.readouterr().out
    assert out.count("read 12 sample(s)") == 2 and "wrote 3 shard(s)" in out
    with pytest.raises(TLCMError, match="not an empty folder"):
        main(["--write-miniature", str(tmp_path / "f")])


def test_the_engine_pairs_each_prompt_with_its_own_image(layouts, tiny_sd_dir, tmp_path):
    """With real images the training prompts are the captions in row order (metadata.jsonl's lines,
    read here directly), and the latents of a micro-batch's prompt indices (repeats and any order)
    are those of the images of the same rows, image by image."""
    from dataclasses import replace

    from engine_helpers import small_recipe

    from tlcm.engine import Trainer

    folder = layouts[0]
    recipe = small_recipe(tiny_sd_dir, tmp_path, steps=1)
    trainer = Trainer(replace(recipe, data=replace(recipe.data, images=folder, prompts=None)))
    lines = [json.loads(line) for line in (folder / METADATA).read_text().splitlines()]
    assert trainer.prompts == [line["text"] for line in lines]
    source = ImageTextSource(folder, model_resolution(trainer.base))
    picks = torch.tensor([7, 2, 7, N - 1, 0])
    one_by_one = torch.stack([source.image(i) for i in picks.tolist()])
    assert torch.equal(source.images(picks), one_by_one)
    g = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    latents = trainer.phase_context.real_images(picks, g())
    assert torch.equal(latents, encode_images(trainer.base, one_by_one, g()))


def test_caption_column_picks_the_captions_and_the_fingerprint(tmp_path):
    """--recipes.data.caption-column names the metadata field read as the caption (diffusers'
    --caption_column); another column gives other captions, hence another fingerprint (a resume
    then sees that the data changed)."""
    Image.new("RGB", (8, 8), "red").save(tmp_path / "a.png")
    record = {"file_name": "a.png", "text": "short", "long_caption": " a long red caption "}
    (tmp_path / METADATA).write_text(json.dumps(record) + "\n")
    default, long = ImageTextSource(tmp_path, 8), ImageTextSource(tmp_path, 8, caption_column="long_caption")
    assert default.text(0) == "short" and long.text(0) == "a long red caption"
    assert default.fingerprint() != long.fingerprint()


def test_shard_member_extensions_are_case_insensitive(tmp_path):
    """KEY.PNG + KEY.TXT (cameras and Windows tools write upper case) pair like KEY.png + KEY.txt."""
    write_tar(tmp_path / "a.tar", [("a.PNG", png_bytes(Image.new("RGB", (8, 8), "red"))), ("a.TXT", b"red")])
    source = ImageTextSource(tmp_path / "a.tar", 8)
    assert len(source) == 1 and source.text(0) == "red" and source.image(0)[0].min() == 1.0
