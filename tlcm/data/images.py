"""Real image-text pairs, in the layouts the diffusers ecosystem trains from, for the losses that need
real samples (MLCD's states "data": LCM, PCM, TCD; later a GAN's "real" side, DMD2's real images).

Three layouts, read without extra packages (no ``datasets``, no ``webdataset``):
- an image folder with ``metadata.jsonl``: one JSON object per line with ``file_name`` (relative to
  the folder) and ``text`` (the caption): the layout of diffusers' text-to-image training scripts
  and of the datasets library's ``imagefolder``;
- an image folder with sidecar captions (kohya sd-scripts, OneTrainer, most LoRA trainers): each
  image ``NAME.jpg|png|jpeg|webp`` with its caption ``NAME.txt`` (or ``.text`` / ``.caption``, in
  that order of preference) beside it, in the folder or any subfolder (kohya's ``10_mychar/``;
  the repeat count of such a name is not applied: every image is one sample), in the sorted order
  of their relative paths;
- webdataset tar shards: members grouped by key (the member name up to the first dot of its base
  name), ``KEY.jpg`` / ``.png`` / ``.jpeg`` / ``.webp`` + ``KEY.txt`` (or ``.text`` / ``.caption``),
  as diffusers' LCM distillation scripts read them. Each uncompressed shard is indexed once
  (member offsets and sizes, 44 bytes per sample) and every sample is read by offset: nothing is
  extracted, nothing but the index is held.

With ``--recipes.data.images`` the captions are the run's prompts: the engine's prompt draw (a pure
function of (seed, step), split into micro-batches) picks the samples, so a resumed or 2-process
run sees the same images as an uninterrupted 1-process one (the loss contract's "mlcd-data" case).
``encode_images`` turns images into latents as the network sees them (the inverse of
``Family.decode``); ``real_latents`` does both for the samples of one micro-batch.

``python -m tlcm.data.images --write-miniature DIR`` writes the miniature's real training digits in
any layout; ``--check PATH`` opens a source and decodes every sample.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from tlcm.checks import check_counts
from tlcm.data.prompts import clean_prompt, json_lines
from tlcm.errors import TLCMError, run_cli
from tlcm.files import write_failed
from tlcm.toy import MINIATURE_DIGITS

if TYPE_CHECKING:
    from tlcm.models.base import BaseModel

METADATA = "metadata.jsonl"
"""The image folder's caption file (datasets' imagefolder, diffusers' training scripts)."""
IMAGE_EXTENSIONS = ("jpg", "png", "jpeg", "webp")
"""A shard sample's image member extensions, in order of preference (diffusers' LCM scripts:
``wds.rename(image="jpg;png;jpeg;webp")``); the sidecar layout's images (any case: ``.PNG`` too)."""
TEXT_EXTENSIONS = ("txt", "text", "caption")
"""A shard sample's caption member extensions, and a sidecar caption file's, in order of preference."""
MISSING_SHOWN = 3
"""Images without a caption file that the sidecar layout's refusal names (the rest are counted)."""
LAYOUTS = ("folder", "captions", "shards")
"""``ImageTextSource.layout``: metadata.jsonl, sidecar caption files, webdataset shards."""
DEFAULT_FLAG = "--recipes.data.real-images"
"""The option named in errors (the proposed DataConfig field)."""
_MEMBER = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")
"""webdataset's key / extension split: key = the name up to the first dot of its base name."""
_BRACE = re.compile(r"\{(\d+)\.\.(\d+)\}")
_ENCODE_PIXELS = 1024 * 1024
"""Input pixels per VAE encode call (``encode_images``): one 1024 px image, a miniature batch at once."""


def expand_braces(pattern: str) -> list[str]:
    """webdataset's shard notation: ``a-{000..009}.tar`` -> a-000.tar ... a-009.tar (zero padding
    of the first bound kept; several ranges multiply out). No range: ``[pattern]``."""
    match = _BRACE.search(pattern)
    if match is None:
        return [pattern]
    lo, hi = match[1], match[2]
    width = len(lo) if lo.startswith("0") else 0
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [
        name
        for i in range(int(lo), int(hi) + 1)
        for name in expand_braces(f"{head}{str(i).zfill(width)}{tail}")
    ]


VERIFY_SHOWN = 10
"""Broken samples ``ImageTextSource.verify`` names in its one error (the rest are counted)."""


class ImageTextSource:
    """Real image-text pairs from an image folder (``metadata.jsonl``), a folder of images with
    sidecar captions, or webdataset tar shards (``layout``: "folder", "captions" or "shards").

    path: a folder holding ``metadata.jsonl`` (the image folder layout); else a folder of ``*.tar``
        shards, one ``.tar`` file, a glob (``shards/*.tar``), a brace range
        (``shards/part-{0000..0099}.tar``), or a list of those; else a folder (without
        ``metadata.jsonl`` and ``*.tar``) of images with sidecar captions: ``NAME.png`` +
        ``NAME.txt`` (``TEXT_EXTENSIONS`` in order of preference, any case; ``NAME`` the file name
        up to its last dot, as kohya's ``--caption_extension``), in the folder and all its
        subfolders (kohya's ``10_mychar/``: its repeat count is not applied, each image is one
        sample; symbolic links followed), hidden files and folders skipped, caption files without an
        image ignored (two images of one NAME share its caption), in the sorted order of the images'
        relative POSIX paths (plain code point order: zero-pad numbers).
    resolution: side of the square images returned: the shorter side is resized to it (bilinear,
        antialiased; untouched when it already fits), then the centre is cropped.
    caption_column: the metadata.jsonl field holding the caption (diffusers' ``--caption_column``).
    flag: the option that gave ``path``, named in errors.

    Every bad input raises a one-line TLCMError (what, where, how to fix): a missing path, a folder
    with none of the layouts, a metadata line that is no JSON object or lacks its ``file_name`` /
    caption, a file_name that does not exist, a compressed or broken shard, a shard image without
    its caption (or a caption without its image), a sidecar folder's images without a caption file
    (counted, the first MISSING_SHOWN named), an unreadable or non-UTF-8 caption file, a subfolder
    that cannot be listed; an unreadable image is reported when it is read (``verify`` reads them
    all up front). Captions are stripped (``clean_prompt``) and may be empty in every layout.
    """

    def __init__(
        self,
        path: str | Path | Sequence[str | Path],
        resolution: int,
        caption_column: str = "text",
        flag: str = DEFAULT_FLAG,
    ) -> None:
        if not isinstance(resolution, int) or isinstance(resolution, bool) or resolution < 1:
            raise TLCMError(f"the real images' resolution must be a positive integer, got {resolution!r}")
        self.resolution, self.flag, self.caption_column = resolution, flag, caption_column
        self._hint = (
            f'pass {flag} a folder with {METADATA} (one {{"file_name", "{caption_column}"}} per image), '
            "a folder of images with a caption file beside each (NAME.png + NAME.txt) "
            "or webdataset .tar shards (KEY.jpg|png|jpeg|webp + KEY.txt)"
        )
        self.root: Path | None = None
        self.shards: list[Path] = []
        self._captions: list[str] = []
        single = isinstance(path, (str, Path))
        folder = Path(path) if single else None
        if folder is not None and folder.is_dir() and (folder / METADATA).is_file():
            self.layout = "folder"
            self.root = folder
            self._files, self._texts = self._read_metadata(folder / METADATA)
        elif folder is not None and (scan := self._sidecar_scan(folder)) is not None:
            self.layout = "captions"
            self.root = folder
            self._files, self._captions, self._texts = self._read_sidecars(folder, *scan)
        else:
            self.layout = "shards"
            self.shards = self._find_shards([path] if single else list(path))
            self._index_shards()
        if len(self) == 0:  # (a sidecar folder has an image with its caption: never empty)
            where = self.root / METADATA if self.root else ", ".join(map(str, self.shards[:3]))
            raise TLCMError(f"{where} holds no image-text pairs: {self._hint}")

    # ----------------------------------------------------------------- opening
    def _read_metadata(self, file: Path) -> tuple[list[str], list[str]]:
        col = self.caption_column
        try:
            text = file.read_bytes().decode("utf-8-sig")
        except OSError as err:
            raise TLCMError(f"cannot read {file} ({err.strerror or err}): check its permissions") from err
        except UnicodeDecodeError as err:
            raise TLCMError(f"{file} is not UTF-8 text (offset {err.start}): re-save it as UTF-8") from err
        files, texts = [], []
        row = f'write one {{"file_name": "IMAGE", "{col}": "CAPTION"}} per line'
        for number, line in enumerate(json_lines(text), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise TLCMError(f"{file}:{number}: not JSON ({err}): {row}") from err
            if not isinstance(record, dict):
                raise TLCMError(f"{file}:{number}: expected a JSON object, found {line.strip()[:60]}: {row}")
            for key in ("file_name", col):
                if not isinstance(record.get(key), str) or (key == "file_name" and not record[key].strip()):
                    found = (
                        f"no {key!r} field (keys: {', '.join(record) or 'none'})"
                        if key not in record
                        else f"{key!r}: {json.dumps(record[key])[:60]}"
                    )
                    captions = [k for k, v in record.items() if k != "file_name" and isinstance(v, str)]
                    if key == col and key not in record and captions and not files:  # the first line
                        flag = f"--recipes.data.caption-column {captions[0]}"
                        row = f"if {captions[0]!r} holds the caption, pass {flag}"
                    raise TLCMError(
                        f"{file}:{number}: {key!r} must be a non-empty string, found {found}: {row}"
                    )
            image = file.parent / record["file_name"]
            if not image.is_file():
                raise TLCMError(
                    f"{file}:{number}: file_name {record['file_name']!r} does not exist ({image}): "
                    f"file_name is relative to the folder of {METADATA}; fix the line or remove it"
                )
            files.append(record["file_name"])
            texts.append(clean_prompt(record[col]))
        return files, texts

    @staticmethod
    def _scan_sidecars(folder: Path) -> tuple[list[str], dict[str, str]]:
        """(images, captions) under ``folder`` and its subfolders (symbolic links followed, each
        real folder once; hidden files and folders skipped): the images' relative POSIX paths,
        sorted, and {relative path up to the last dot: its preferred caption file's relative
        path}."""
        images: list[str] = []
        captions: dict[str, tuple[int, str]] = {}
        seen: set[str] = set()

        def unlisted(err: OSError) -> None:  # os.walk would skip the folder: its images lost unsaid
            raise TLCMError(f"cannot list {err.filename} ({err.strerror or err}): check its permissions")

        for top, folders, names in os.walk(folder, onerror=unlisted, followlinks=True):
            real = os.path.realpath(top)
            if real in seen:  # a link back up: walked already
                folders[:] = []
                continue
            seen.add(real)
            folders[:] = sorted(f for f in folders if not f.startswith("."))
            under = Path(top).relative_to(folder)
            for name in sorted(names):
                stem, dot, ext = name.rpartition(".")
                if name.startswith(".") or not dot:
                    continue
                relative = (under / name).as_posix()
                if ext.lower() in IMAGE_EXTENSIONS:
                    images.append(relative)
                elif ext.lower() in TEXT_EXTENSIONS:
                    rank = TEXT_EXTENSIONS.index(ext.lower())
                    key = (under / stem).as_posix()
                    if key not in captions or rank < captions[key][0]:
                        captions[key] = (rank, relative)
        return sorted(images), {key: file for key, (_, file) in captions.items()}

    def _sidecar_scan(self, folder: Path) -> tuple[list[str], dict[str, str]] | None:
        """``_scan_sidecars(folder)`` if ``folder`` is a folder without metadata.jsonl and ``*.tar``
        in which an image has its caption file (the sidecar layout), else None."""
        if not folder.is_dir() or (folder / METADATA).is_file() or any(folder.glob("*.tar")):
            return None
        images, captions = self._scan_sidecars(folder)
        paired = any(image.rpartition(".")[0] in captions for image in images)
        return (images, captions) if paired else None

    def _read_sidecars(
        self, folder: Path, images: list[str], captions: dict[str, str]
    ) -> tuple[list[str], list[str], list[str]]:
        """(images, their caption files, the captions) of the sidecar folder ``folder`` (scanned:
        ``images``, ``captions``); every image must have its caption file, a UTF-8 one."""
        missing = [image for image in images if image.rpartition(".")[0] not in captions]
        if missing:
            first = missing[0].rpartition(".")[0]
            add = f"add {first}.txt (its caption, UTF-8) beside it or move the image out of the folder"
            if len(missing) == 1:
                raise TLCMError(f"{folder}: the image {missing[0]} has no caption file ({first}.txt): {add}")
            shown = ", ".join(missing[:MISSING_SHOWN]) + (", ..." if len(missing) > MISSING_SHOWN else "")
            raise TLCMError(
                f"{folder}: {len(missing)} of {len(images)} images have no caption file ({shown}): "
                "add NAME.txt (its caption, UTF-8) beside each NAME.png|jpg|jpeg|webp or move those "
                "images out of the folder"
            )
        files = [captions[image.rpartition(".")[0]] for image in images]
        texts = []
        for file in files:
            path = folder / file
            try:
                texts.append(clean_prompt(path.read_bytes().decode("utf-8-sig")))
            except OSError as err:
                raise TLCMError(
                    f"cannot read the caption file {path} ({err.strerror or err}): check its permissions"
                ) from err
            except UnicodeDecodeError as err:
                raise TLCMError(
                    f"the caption file {path} is not UTF-8 text (offset {err.start}): re-save it as UTF-8"
                ) from err
        return images, files, texts

    def _find_shards(self, paths: list[str | Path]) -> list[Path]:
        shards: list[Path] = []
        for item in paths:
            text = str(item)
            names = [n for pattern in expand_braces(text) for n in self._glob(pattern)]
            for name in names:
                p = Path(name)
                if p.is_dir() and (p / METADATA).is_file():
                    raise TLCMError(
                        f"{p} is an image folder ({METADATA}): pass it alone, not among .tar shards"
                    )
                if p.is_dir() and self._sidecar_scan(p) is not None:
                    raise TLCMError(
                        f"{p} is an image folder (captions beside its images): pass it alone, not among "
                        ".tar shards"
                    )
                if p.is_dir():
                    found = sorted(p.glob("*.tar"))
                    if not found:
                        raise TLCMError(self._empty_folder(p))
                    shards += found
                elif not p.exists():
                    raise TLCMError(f"real image path {p} does not exist: {self._hint}")
                elif p.name.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar.zst")):
                    raise TLCMError(
                        f"shard {p} is compressed: shards must be plain .tar files (read by offset); "
                        "re-pack it uncompressed (tar -xzf, then tar -cf; images are compressed already)"
                    )
                elif p.suffix != ".tar":
                    raise TLCMError(f"real image path {p} is neither a folder nor a .tar shard: {self._hint}")
                else:
                    shards.append(p)
        return shards

    def _glob(self, pattern: str) -> list[str]:
        if not glob.has_magic(pattern):
            return [pattern]
        found = sorted(glob.glob(pattern))
        if not found:
            raise TLCMError(f"no file matches {pattern}: {self._hint}")
        return found

    def _empty_folder(self, folder: Path) -> str:
        nested = sorted(folder.glob(f"*/{METADATA}"))
        also = f" ({nested[0]} exists: pass {nested[0].parent})" if nested else ""
        csv = (
            " (metadata.csv is not read: convert it to metadata.jsonl)"
            if (folder / "metadata.csv").is_file()
            else ""
        )
        images = [] if nested else self._scan_sidecars(folder)[0]
        bare = f" ({len(images)} image(s), none with a caption file NAME.txt beside it)" if images else ""
        return f"{folder} holds neither {METADATA} nor .tar shards{also}{csv}{bare}: {self._hint}"

    def _index_shards(self) -> None:
        """Index every shard once: (shard, image header / data offset / size, caption offset / size)
        per sample, in shard order then first-appearance order of keys."""
        columns: list[list[int]] = [[] for _ in range(6)]
        for number, shard in enumerate(self.shards):
            for row in self._index_shard(shard):
                for column, value in zip(columns, (number, *row), strict=True):
                    column.append(value)
        self._shard = np.asarray(columns[0], dtype=np.int32)
        self._header, self._image_at, self._image_size, self._text_at, self._text_size = (
            np.asarray(c, dtype=np.int64) for c in columns[1:]
        )

    def _index_shard(self, shard: Path) -> list[tuple[int, int, int, int, int]]:
        remake = "re-create it (tar -cf) or leave it out"
        groups: dict[str, dict[str, tarfile.TarInfo]] = {}
        try:
            with tarfile.open(shard, mode="r:") as tar:
                for info in tar:
                    match = _MEMBER.match(info.name)
                    if not info.isfile() or match is None:
                        continue
                    groups.setdefault(match[1], {}).setdefault(match[2].lower(), info)
        except OSError as err:
            raise TLCMError(
                f"cannot read shard {shard} ({err.strerror or err}): check its permissions"
            ) from err
        except tarfile.TarError as err:
            raise TLCMError(f"shard {shard} is not a readable uncompressed tar ({err}): {remake}") from err
        rows = []
        for key, members in groups.items():
            image = next((members[e] for e in IMAGE_EXTENSIONS if e in members), None)
            text = next((members[e] for e in TEXT_EXTENSIONS if e in members), None)
            if image is not None and text is None:
                raise TLCMError(
                    f"shard {shard}: {image.name} has no caption ({key}.txt): every image needs "
                    f"{key}.txt beside it in the shard; add it or leave the image out ({remake})"
                )
            if image is None and text is not None:
                raise TLCMError(
                    f"shard {shard}: {text.name} has no image ({key}.jpg|png|jpeg|webp): add the image "
                    f"or leave the caption out ({remake})"
                )
            if image is not None:
                rows.append((image.offset, image.offset_data, image.size, text.offset_data, text.size))
        return rows

    # ----------------------------------------------------------------- reading
    def __len__(self) -> int:
        return len(self._files) if self.root is not None else len(self._shard)

    def __repr__(self) -> str:
        where = self.root if self.root else f"{len(self.shards)} shard(s) from {self.shards[0]}"
        return f"ImageTextSource({where}, {len(self)} pairs, {self.resolution} px)"

    def describe(self, index: int) -> str:
        """Where sample ``index`` lives, for messages: its file, or its shard and member."""
        if self.root is not None:
            return str(self.root / self._files[index])
        shard = self.shards[self._shard[index]]
        try:
            with tarfile.open(shard, mode="r:") as tar:
                tar.fileobj.seek(int(self._header[index]))
                name = tarfile.TarInfo.fromtarfile(tar).name
        except (OSError, tarfile.TarError):
            name = f"the member at byte {self._image_at[index]}"
        return f"{shard}:{name}"

    def _read_member(self, shard: Path, offset: int, size: int) -> bytes:
        with shard.open("rb") as handle:
            handle.seek(offset)
            data = handle.read(size)
        if len(data) != size:
            raise EOFError(f"{size - len(data)} of {size} bytes missing: the shard is truncated")
        return data

    def text(self, index: int) -> str:
        """The caption of sample ``index`` (stripped of whitespace; may be empty)."""
        if self.root is not None:
            return self._texts[index]
        shard = self.shards[self._shard[index]]
        try:
            raw = self._read_member(shard, int(self._text_at[index]), int(self._text_size[index]))
            return clean_prompt(raw.decode("utf-8-sig"))
        except (OSError, EOFError, UnicodeDecodeError) as err:
            raise TLCMError(
                f"cannot read the caption of {self.describe(index)} ({err}): re-write it as UTF-8 text "
                "or leave the sample out of the shard"
            ) from err

    def image(self, index: int) -> torch.Tensor:
        """Image ``index`` as (3, R, R) float32 in [-1, 1] (EXIF orientation applied, RGB)."""
        try:
            if self.root is not None:
                data = (self.root / self._files[index]).read_bytes()
            else:
                shard = self.shards[self._shard[index]]
                data = self._read_member(shard, int(self._image_at[index]), int(self._image_size[index]))
            with Image.open(io.BytesIO(data)) as opened:
                pixels = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))
        except (OSError, EOFError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            fix = {
                "folder": f"fix its line in {METADATA}",
                "captions": "move it and its caption file out of the folder",
                "shards": "leave it out of the shard",
            }[self.layout]
            why = "not an image format PIL reads" if isinstance(err, UnidentifiedImageError) else err
            raise TLCMError(
                f"cannot read the image {self.describe(index)} ({why}): re-encode it as PNG / JPEG, or {fix}"
            ) from err
        from torchvision.transforms.v2 import functional as TF  # here: `--help` loads no torchvision

        x = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255.0
        x = TF.resize(x, [self.resolution], antialias=True)
        x = TF.center_crop(x, [self.resolution, self.resolution])
        return (x * 2 - 1).clamp(-1, 1)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        return self.image(index), self.text(index)

    def images(self, indices: torch.Tensor) -> torch.Tensor:
        """The images (B, 3, R, R) in [-1, 1] of the samples ``indices`` (B,) (which samples a step
        uses is the engine's draw: its prompt indices, the captions being the prompts)."""
        if len(indices) == 0:
            return torch.empty(0, 3, self.resolution, self.resolution)
        return torch.stack([self.image(i) for i in indices.tolist()])

    def verify(self, limit: int | None = None) -> int:
        """Read (decode and caption) the first ``limit`` samples (None: all) so that a broken one is
        reported now rather than mid-run; return how many were read. Every broken sample is read
        to the end and reported in one TLCMError (the first VERIFY_SHOWN of them named), not one
        per rerun."""
        count = len(self) if limit is None else min(limit, len(self))
        problems: list[TLCMError] = []
        for i in range(count):
            try:
                self[i]
            except TLCMError as err:
                problems.append(err)
        if len(problems) == 1:
            raise problems[0]
        if problems:
            more = len(problems) - VERIFY_SHOWN
            listed = "; ".join(str(p) for p in problems[:VERIFY_SHOWN]) + (
                f"; and {more} more" if more > 0 else ""
            )
            raise TLCMError(f"{len(problems)} of {count} samples cannot be read: {listed}")
        return count

    def fingerprint(self) -> str:
        """sha256 of what identifies the data (cheap: no image is read): the layout and caption
        column, the bytes of metadata.jsonl, or each sidecar image's relative path and size with its
        caption file's path and bytes, or each shard's name and size, and the sample count; for a
        run record that a resume compares."""
        digest = hashlib.sha256(f"{self.layout}/{self.caption_column}/{len(self)}".encode())
        if self.layout == "captions":
            for image, caption in zip(self._files, self._captions, strict=True):
                try:
                    size, data = (self.root / image).stat().st_size, (self.root / caption).read_bytes()
                except OSError as err:
                    raise TLCMError(
                        f"cannot read {err.filename} ({err.strerror or err}): it changed since "
                        f"{self.root} was opened; check the folder and rerun"
                    ) from err
                digest.update(f"{image}\0{size}\0{caption}\0{len(data)}\0".encode() + data)
        elif self.root is not None:
            digest.update((self.root / METADATA).read_bytes())
        else:
            for shard in self.shards:
                digest.update(f"{shard.name}/{shard.stat().st_size}\n".encode())
        return digest.hexdigest()


# --------------------------------------------------------------------- latents
def model_resolution(base: BaseModel) -> int:
    """Pixels of the training images of ``base`` (its latent side times the VAE's factor)."""
    return base.latent_shape[-1] * base.pipe.vae_scale_factor


@torch.no_grad()
def encode_images(
    base: BaseModel,
    images: torch.Tensor,
    generator: torch.Generator | None = None,
    sample: bool = True,
) -> torch.Tensor:
    """Images (B, 3, H, W) in [-1, 1] -> latents (B, C, h, w) fp32 as the network sees them, the
    inverse of ``Family.decode`` (``latents / scale + shift``, ``Family.latent_affine``):
    ``(z - shift) * scale`` with z the VAE posterior's sample (``generator``; as
    diffusers' training scripts and DMD2 encode real images) or, with ``sample`` False, its mode.
    The sample is ``mean + std * eps`` in fp32 with eps drawn in fp32, whatever the VAE's dtype:
    diffusers' ``sample()`` draws eps in the VAE's dtype, and bf16 draws take another stream than
    fp32 ones on some torch versions (2.11's CPU), so bf16 and fp32 runs trained on other noise.
    Under ``base.autocast()``, in slices of at most 1024 x 1024 input pixels, no gradient."""
    from diffusers.utils.torch_utils import randn_tensor

    vae = base.pipe.vae
    size = max(1, _ENCODE_PIXELS // (images.shape[-2] * images.shape[-1]))
    out = []
    with base.autocast():
        for chunk in images.split(size):
            posterior = vae.encode(chunk.to(base.device, vae.dtype)).latent_dist
            z = posterior.mode().float()
            if sample:
                eps = randn_tensor(z.shape, generator=generator, device=z.device, dtype=torch.float32)
                z = z + posterior.std.float() * eps
            scale, shift = base.family.latent_affine(base.pipe.vae.config, z)
            out.append((z - shift) * scale)
    return torch.cat(out)


def real_latents(
    base: BaseModel, source: ImageTextSource, indices: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Latents (B, C, h, w) of the samples ``indices`` (B,) (``source.images`` then
    ``encode_images``, the posterior sampled with ``generator``): ``StepContext.real_latents`` of
    the engine. The source's resolution must be the model's training resolution."""
    if source.resolution != model_resolution(base):
        raise TLCMError(
            f"the real images are read at {source.resolution} px but the model trains at "
            f"{model_resolution(base)} px: open them with resolution={model_resolution(base)}"
        )
    return encode_images(base, source.images(indices), generator)


# --------------------------------------------------------------------- writing
def _png(image: torch.Tensor) -> bytes:
    """(3, H, W) in [-1, 1] -> PNG bytes (8 bit RGB, rounded)."""
    pixels = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
    return buffer.getvalue()


def _new_folder(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise TLCMError(f"{out_dir} exists and is not an empty folder: pass a new folder to write into")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_failed(f"the real images to {out_dir}", err) from err
    return out_dir


def save_image_folder(
    out_dir: str | Path,
    images: torch.Tensor,
    texts: Sequence[str],
    extra: Sequence[dict] | None = None,
) -> Path:
    """Write images (N, 3, H, W) in [-1, 1] as ``DIR/00000.png`` ... and ``DIR/metadata.jsonl``
    (``file_name``, ``text``, plus the fields of ``extra[i]``), the metadata last (via rename), so a
    half-written folder is never a complete one. ``out_dir`` must be new or empty."""
    if len(images) != len(texts):
        raise ValueError(f"{len(images)} images but {len(texts)} texts")
    out_dir, width = _new_folder(out_dir), max(5, len(str(len(images) - 1)))
    try:
        rows = []
        for i, (image, text) in enumerate(zip(images, texts, strict=True)):
            name = f"{i:0{width}d}.png"
            (out_dir / name).write_bytes(_png(image))
            rows.append(json.dumps({"file_name": name, "text": text, **(extra[i] if extra else {})}))
        partial_file = out_dir / f"{METADATA}.partial"
        partial_file.write_text("\n".join(rows) + "\n", encoding="utf-8")
        partial_file.replace(out_dir / METADATA)
    except OSError as err:
        raise write_failed(f"the real images to {out_dir}", err) from err
    return out_dir


def save_caption_folder(
    out_dir: str | Path,
    images: torch.Tensor,
    texts: Sequence[str],
    extra: Sequence[dict] | None = None,
) -> Path:
    """Write images (N, 3, H, W) in [-1, 1] as ``DIR/00000.png`` ... each with its caption beside
    it, ``DIR/00000.txt`` (UTF-8; the sidecar layout of kohya's sd-scripts) and, with ``extra``,
    ``DIR/00000.json`` (which no reader of captions reads). Each sample's caption is written before
    its image, the image as ``.png.partial`` renamed when complete, so an interrupted write leaves
    whole samples only (as ``save_shards`` leaves whole shards). ``out_dir`` must be new or empty."""
    if len(images) != len(texts):
        raise ValueError(f"{len(images)} images but {len(texts)} texts")
    out_dir, width = _new_folder(out_dir), max(5, len(str(len(images) - 1)))
    try:
        for i, (image, text) in enumerate(zip(images, texts, strict=True)):
            key = f"{i:0{width}d}"
            if extra:
                (out_dir / f"{key}.json").write_text(json.dumps(extra[i]), encoding="utf-8")
            (out_dir / f"{key}.txt").write_text(text, encoding="utf-8")
            partial_file = out_dir / f"{key}.png.partial"
            partial_file.write_bytes(_png(image))
            partial_file.replace(out_dir / f"{key}.png")
    except OSError as err:
        raise write_failed(f"the real images to {out_dir}", err) from err
    return out_dir


def save_shards(
    out_dir: str | Path,
    images: torch.Tensor,
    texts: Sequence[str],
    per_shard: int = 1000,
    extra: Sequence[dict] | None = None,
) -> list[Path]:
    """Write images (N, 3, H, W) in [-1, 1] as webdataset shards ``DIR/shard-000000.tar`` ... of
    ``per_shard`` samples: ``KEY.png``, ``KEY.txt`` (UTF-8 caption) and, with ``extra``,
    ``KEY.json``, KEY the sample's global index. Each shard is written as ``.tar.partial`` and
    renamed when complete. ``out_dir`` must be new or empty."""
    if len(images) != len(texts):
        raise ValueError(f"{len(images)} images but {len(texts)} texts")
    if per_shard < 1:
        raise ValueError(f"per_shard must be >= 1, got {per_shard}")
    out_dir, width = _new_folder(out_dir), max(5, len(str(len(images) - 1)))
    shards = []
    try:
        for number, start in enumerate(range(0, len(images), per_shard)):
            shard = out_dir / f"shard-{number:06d}.tar"
            partial_file = shard.with_name(shard.name + ".partial")
            with tarfile.open(partial_file, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                for i in range(start, min(start + per_shard, len(images))):
                    members = {"png": _png(images[i]), "txt": texts[i].encode("utf-8")}
                    if extra:
                        members["json"] = json.dumps(extra[i]).encode("utf-8")
                    for ext, data in members.items():
                        info = tarfile.TarInfo(f"{i:0{width}d}.{ext}")
                        info.size, info.mode = len(data), 0o644
                        tar.addfile(info, io.BytesIO(data))
            partial_file.replace(shard)
            shards.append(shard)
    except OSError as err:
        raise write_failed(f"the real image shards to {out_dir}", err) from err
    return shards


def write_miniature(
    out_dir, layout: str = "folder", n: int | None = None, per_shard: int = 1000, seed: int = 0
) -> Path | list[Path]:
    """Write the miniature's real digits (``tlcm.toy.data.real_pairs(n, seed)``) into the new or
    empty ``out_dir``: as an image folder (``layout`` "folder": PNGs + metadata.jsonl with
    file_name, text, digit, ink; returns the folder), as images with sidecar captions ("captions":
    KEY.png, KEY.txt, KEY.json; returns the folder) or as webdataset shards ("shards": KEY.png,
    KEY.txt, KEY.json, ``per_shard`` samples each; returns the shard paths)."""
    from tlcm.toy.data import real_pairs  # scikit-learn's digits: only for this command

    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    images, texts, rows = real_pairs(n, seed)
    if layout == "folder":
        return save_image_folder(out_dir, images, texts, rows)
    if layout == "captions":
        return save_caption_folder(out_dir, images, texts, rows)
    return save_shards(out_dir, images, texts, per_shard, rows)


def write_once(folder: Path, write: Callable[[Path], Path]) -> Path:
    """``folder``, made by ``write(scratch)`` in a scratch sibling renamed into place unless it
    already holds a complete source (its metadata.jsonl): processes that ask at the same time (under
    torchrun) never see a half-written folder, and only the first one's copy stays."""
    if not (folder / METADATA).is_file():
        scratch = write(folder.parent / f".{folder.name}-{os.getpid()}")
        try:
            scratch.rename(folder)
        except OSError:  # another process renamed its copy first
            shutil.rmtree(scratch)
    return folder


def open_images(
    path: str | Path | Sequence[str | Path],
    resolution: int,
    caption_column: str = "text",
    flag: str = DEFAULT_FLAG,
) -> ImageTextSource:
    """``ImageTextSource(path, ...)``; ``MINIATURE_DIGITS`` (the recipes' real images on the
    miniature) is written there first when missing."""
    if isinstance(path, (str, Path)) and Path(path) == MINIATURE_DIGITS:
        MINIATURE_DIGITS.parent.mkdir(parents=True, exist_ok=True)
        write_once(MINIATURE_DIGITS, write_miniature)
    return ImageTextSource(path, resolution, caption_column, flag)


# --------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tlcm.data.images",
        description="Write the miniature's real training digits as an image folder (metadata.jsonl), "
        "images with caption files beside them or webdataset shards, or check a real image-text "
        "source by reading every sample.",
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write-miniature", type=Path, metavar="DIR", help="a new folder to write")
    action.add_argument("--check", nargs="+", metavar="PATH", help="a folder, .tar shard(s), glob or {a..b}")
    parser.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="folder",
        help="--write-miniature's layout: metadata.jsonl, NAME.png + NAME.txt, or .tar shards",
    )
    parser.add_argument("--n", type=int, default=None, help="digits to write (default: all 3594, both inks)")
    parser.add_argument("--per-shard", type=int, default=1000, help="samples per shard (--layout shards)")
    parser.add_argument("--seed", type=int, default=0, help="which digits when --n is below all")
    parser.add_argument("--resolution", type=int, default=32, help="--check: resize to this side")
    parser.add_argument("--limit", type=int, default=None, help="--check: read only the first N samples")
    args = parser.parse_args(argv)
    counts = {
        "--n": args.n,
        "--per-shard": args.per_shard,
        "--resolution": args.resolution,
        "--limit": args.limit,
    }
    check_counts(counts)
    if args.write_miniature is not None:
        out = write_miniature(args.write_miniature, args.layout, args.n, args.per_shard, args.seed)
        if args.layout == "folder":
            count = len((out / METADATA).read_text().splitlines())
            print(f"wrote {count} digits to {out} ({METADATA} and their images)")
        elif args.layout == "captions":
            count = len(list(out.glob("*.png")))
            print(f"wrote {count} digits to {out} (each image with its caption beside it, NAME.txt)")
        else:
            print(f"wrote {len(out)} shard(s) to {args.write_miniature}")
        return
    paths = args.check[0] if len(args.check) == 1 else args.check
    source = ImageTextSource(paths, args.resolution, flag="--check")
    count = source.verify(args.limit)
    print(f"{source!r}: read {count} sample(s); fingerprint {source.fingerprint()[:16]}")


if __name__ == "__main__":
    run_cli(partial(main, None))
