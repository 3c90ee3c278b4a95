"""Teacher trajectory cache: stage 1 (MLCD) with zero teacher UNet calls per training step.

``build_cache`` runs the teacher's CFG-DDIM from x_T ~ N(0, I) at ``schedule.max_timestep`` down a
fixed grid and stores every state. The grid holds every milestone edge t_M' = min(t_M, max_timestep),
..., t_1, t_0 and, inside each segment (t_s, t_{s+1}], the points t_{s+1}, t_{s+1} - k, ... > t_s,
so consecutive points (t_m, t_n) are exactly MLCD's pair t_n = max(t_m - k, t_s), and the stored
x_{t_n} is the teacher's one CFG-DDIM step from the stored x_{t_m} (docs/method.md, "Stage 1";
arXiv 2406.05768 Eq. (8), Alg. 1).

On disk: ``shard-00000.safetensors``, ... (``states`` (N, G, C, h, w), float16 by default: half
the bytes for ~1e-3 relative rounding; ``prompt_index`` (N,) int64) and ``manifest.json`` (grid,
M, k, w, teacher fingerprint, latent shape, dtype, prompts, shard sha256s, format version; the
teacher's weight dtype and prompt length in tokens, since 2026-12-07). ``TrajectoryCache.open``
refuses any mismatch or corruption with a one-line ``TLCMError``; a teacher that ran in another
weight dtype than the run's is only noted (the targets differ by that dtype's rounding).
CLI: ``python -m tlcm.data.trajectories --model DIR --prompts FILE --out DIR --samples-per-prompt 8``
(``--import MODULE``: a module of yours that registers the model's family; tlcm/user_modules.py).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
import tyro
from rich.console import Console
from rich.progress import Progress
from safetensors import safe_open

from tlcm.checks import check_device, check_out_dir, check_seed
from tlcm.config import FrozenDtype
from tlcm.data import check_fields, sha256_file
from tlcm.data.images import model_resolution, open_images
from tlcm.data.prompts import load_prompts
from tlcm.data.states import TrajectoryStates
from tlcm.diffusion.denoiser import Guided
from tlcm.diffusion.milestones import milestones
from tlcm.diffusion.schedule import Schedule
from tlcm.diffusion.solvers import teacher_solve
from tlcm.errors import TLCMError, note, run_cli
from tlcm.files import save_tensors
from tlcm.toy import MINIATURE_SD, TEACHER_GUIDANCE_SCALE
from tlcm.user_modules import cli_args

if TYPE_CHECKING:  # the model libraries load with the teacher: --help and flag errors are quick
    from tlcm.models.base import BaseModel

FORMAT, VERSION = "tlcm-trajectories", 1
MANIFEST_FIELDS = {
    "format": str,
    "version": int,
    "num_milestones": int,
    "skip": int,
    "num_prompts": int,
    "dtype": str,
    "grid": list[int],
    "edges": list[int],
    "shards": list,
}
SHARD_FIELDS = {"file": str, "samples": int, "sha256": str}
"""What manifest.json holds that opening the cache reads (the rest is compared), and each shard."""
DTYPES = {
    "float16": (torch.float16, "F16"),
    "bfloat16": (torch.bfloat16, "BF16"),
    "float32": (torch.float32, "F32"),
}
"""Storage dtypes: torch dtype and safetensors' name."""


def rebuild_command(
    model: Path | str,
    out: Path,
    prompt_file: Path | None,
    num_milestones: int | None = None,
    skip: int | None = None,
    guidance_scale: float | None = None,
    images: Path | None = None,
    caption_column: str = "text",
    max_sequence_length: int | None = None,
) -> str:
    """The command a refusal names to rebuild the cache: the run's prompts (its prompt file, or
    its image folder's captions; neither: the miniature prompts, the CLI's default) and each of M,
    k, w and the T5 prompt length that is not None."""
    prompts = f" --prompts {prompt_file}" if prompt_file else ""
    if images:
        column = f" --caption-column {caption_column}" if caption_column != "text" else ""
        prompts = f" --images {images}{column}"
    flags = (
        ("num-milestones", num_milestones),
        ("skip", skip),
        ("guidance-scale", guidance_scale),
        ("max-sequence-length", max_sequence_length),
    )
    extra = "".join(f" --{flag} {v}" for flag, v in flags if v is not None)
    return f"rebuild with python -m tlcm.data.trajectories --model {model}{prompts} --out {out}{extra}"


def segment_edges(schedule: Schedule, num_milestones: int) -> list[int]:
    """Milestones [t_0, ..., t_M] with t_M clamped to ``schedule.max_timestep`` (999 for VP)."""
    edges = milestones(num_milestones, schedule).tolist()
    return [*edges[:-1], min(edges[-1], int(schedule.max_timestep))]


def trajectory_grid(schedule: Schedule, num_milestones: int, skip: int) -> list[int]:
    """Descending grid: each segment's upper edge, then steps of ``skip`` while above its lower edge,
    ending at t_0 = 0. M = 8, k = 20, VP: [999, 979, ..., 879, 875, 855, ..., 755, 750, ..., 5, 0],
    57 points. Raises ValueError for M outside 1..T or k outside 1..T/M, and for a flow schedule
    (SD3 / FLUX): the cache stores integer VP grids; flow models use MLCD's MDS states."""
    if not schedule.discrete:
        raise ValueError(
            "the trajectory cache holds VP (SD1.5 / SDXL) trajectories; flow models use states mds"
        )
    edges, limit = segment_edges(schedule, num_milestones), schedule.num_train_timesteps // num_milestones
    if not 1 <= skip <= limit:
        raise ValueError(f"skip must be in 1..{limit} (T/M), got {skip}")
    return [t for s in range(num_milestones - 1, -1, -1) for t in range(edges[s + 1], edges[s], -skip)] + [0]


def teacher_fingerprint(path: Path) -> str:
    """The model family's fingerprint of the teacher folder ``path`` ("<family>:<sha256>" over every
    component that determines the outputs: denoiser, VAE, text encoders and tokenizers, scheduler
    config; ``Family.fingerprint``): any retrained or swapped component changes it."""
    from tlcm.models.families import FAMILIES
    from tlcm.models.folders import check_model_folder

    return FAMILIES[check_model_folder(path, "--model")].fingerprint(path)


OLD_FINGERPRINT = (
    "made by an older tlcm, whose fingerprint covered only unet/, text_encoder*/ and the scheduler"
)
"""What the refusal adds for a cache whose fingerprint has no family prefix (before the family owned it)."""


@torch.no_grad()
def build_cache(
    base: BaseModel,
    prompts: list[str],
    out_dir: Path,
    samples_per_prompt: int,
    num_milestones: int = 8,
    skip: int = 20,
    guidance_scale: float = TEACHER_GUIDANCE_SCALE,
    seed: int = 0,
    shard_size: int = 256,
    batch_size: int = 64,
    dtype: str = "float16",
    progress: Progress | None = None,
) -> dict:
    """Write ``samples_per_prompt`` trajectories per prompt to ``out_dir``; returns the manifest.

    Row r = p * samples_per_prompt + j starts from ``randn(C, h, w)`` of a CPU generator seeded
    seed * 1_000_003 + r (independent of batch size and device). Each batch of b <= ``batch_size``
    rows costs G - 1 guided teacher calls (batch 2b); states are stored after each step.
    """
    if min(samples_per_prompt, shard_size, batch_size) < 1 or not prompts:
        raise TLCMError("--samples-per-prompt, --shard-size, --batch-size must be >= 1, with >= 1 prompt")
    schedule, shape, device = base.schedule, base.latent_shape, base.device
    try:
        grid = trajectory_grid(schedule, num_milestones, skip)
    except ValueError as err:
        raise TLCMError(f"--num-milestones {num_milestones} --skip {skip}: {err}") from err
    cond, uncond = base.encode(prompts)  # before --out exists: a refused prompt leaves no folder
    tokens = cond.prompt_embeds.shape[1]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)  # a half-rebuilt cache never validates
    net, calls = base.denoiser(), [0]

    def counted(x, t, c):
        calls[0] += 1
        return net(x, t, c)

    teacher = Guided(counted, guidance_scale, uncond[:1])

    times = torch.tensor(grid, dtype=torch.float64, device=device)
    total, shards = len(prompts) * samples_per_prompt, []
    task = progress.add_task("teacher trajectories", total=total) if progress else None
    for first in range(0, total, shard_size):
        rows = torch.arange(first, min(first + shard_size, total))
        states = torch.empty(len(rows), len(grid), *shape, dtype=DTYPES[dtype][0])
        for chunk in rows.split(batch_size):
            idx, local = (chunk // samples_per_prompt).to(device), chunk - first
            gens = [torch.Generator().manual_seed(seed * 1_000_003 + int(r)) for r in chunk]
            x = torch.stack([torch.randn(shape, generator=g, device="cpu") for g in gens])
            x = x.to(device)  # fp32 solver states; the denoiser casts to its weights (BaseModel.denoiser)
            states[local, 0] = x.cpu().to(states.dtype)
            for g in range(len(grid) - 1):
                t, s = (schedule.discretize(times[i].expand(len(chunk))) for i in (g, g + 1))
                x = teacher_solve(teacher, schedule, x, t, s, cond[idx])
                states[local, g + 1] = x.cpu().to(states.dtype)
            if progress:
                progress.advance(task, len(chunk))
        name = f"shard-{len(shards):05d}.safetensors"
        save_tensors({"states": states, "prompt_index": rows // samples_per_prompt}, out_dir / name)
        shards.append({"file": name, "samples": len(rows), "sha256": sha256_file(out_dir / name)})
    for stale in set(out_dir.glob("shard-*.safetensors")) - {out_dir / s["file"] for s in shards}:
        stale.unlink()
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "model": str(base.path),
        "teacher_fingerprint": teacher_fingerprint(base.path),
        "num_milestones": num_milestones,
        "skip": skip,
        "guidance_scale": guidance_scale,
        "grid": grid,
        "edges": segment_edges(schedule, num_milestones),
        "latent_shape": list(shape),
        "dtype": dtype,
        "teacher_dtype": str(base.net.dtype).removeprefix("torch."),
        "prompt_tokens": tokens,
        "seed": seed,
        "samples_per_prompt": samples_per_prompt,
        "num_prompts": len(prompts),
        "prompts": prompts,
        "teacher_unet_calls": calls[0],
        "shards": shards,
    }
    (out_dir / "manifest.json.tmp").write_text(json.dumps(manifest, indent=1) + "\n")
    (out_dir / "manifest.json.tmp").replace(out_dir / "manifest.json")
    return manifest


def check_teacher(manifest: dict, base: BaseModel, folder: Path, refuse: Callable[[str], TLCMError]) -> None:
    """Compare the cache's teacher with the run's ``base``: the prompt length in tokens (T5's
    max_sequence_length for SD3 / FLUX: a cache made at another length followed other conditioning)
    is refused (``refuse(what)``: the TLCMError to raise); another weight dtype (a bf16-built cache
    in an fp32 run, or the reverse) is noted in one line, not refused: the targets differ from this
    run's teacher only by the coarser dtype's rounding. Caches made before 2026-12-07 record neither."""
    tokens = manifest.get("prompt_tokens")
    if tokens is not None:
        ours = base.encode([""])[0].prompt_embeds.shape[1]
        if tokens != ours:
            raise refuse(
                f"prompt_tokens differs (expected {ours}, this run's prompt encoding, found {tokens}): "
                "the prompts were encoded to another length (T5's --max-sequence-length)"
            )
    built, ours = manifest.get("teacher_dtype"), str(base.net.dtype).removeprefix("torch.")
    if built is not None and built != ours:
        from tlcm.models.base import FROZEN_DTYPES  # loaded with the model already

        flag = next((k for k, v in FROZEN_DTYPES.items() if v == base.net.dtype), ours)
        note(
            f"note: trajectory cache {folder} was made by the teacher in {built}, this run's teacher weights "
            f"are {ours}: the cached targets differ from this run's teacher by that rounding (rebuild "
            f"with --frozen-dtype {flag} to match)"
        )


class TrajectoryCache:
    """An opened, validated cache. Shards stay on disk, memory-mapped: ``open`` streams each once to
    check its sha256, ``sample`` then reads only the rows it needs (memory stays flat whatever the
    cache size; processes on one host share the page cache)."""

    def __init__(self, folder: Path, manifest: dict, handles: list, schedule: Schedule) -> None:
        self.folder, self.manifest, self._handles = folder, manifest, handles
        self.prompt_file: Path | None = None  # the run's prompts, for the rebuild command (``open``)
        self.captions: tuple[Path | None, str] = (None, "text")  # or its images and caption column
        self.max_sequence_length: int | None = None  # the run's T5 length, for the rebuild command
        self.num_milestones, self.skip = manifest["num_milestones"], manifest["skip"]
        self._slices = [h.get_slice("states") for h in handles]
        grid, edges = manifest["grid"], manifest["edges"]
        self.grid, self.edges = (schedule.discretize(torch.tensor(v).double()) for v in (grid, edges))
        self.seg_first = torch.tensor([grid.index(t) for t in edges[1:]])  # t_m of segment s: grid indices
        self.seg_lower = torch.tensor([grid.index(t) for t in edges[:-1]])  # seg_first[s] .. seg_lower[s] - 1
        index = torch.cat([h.get_tensor("prompt_index") for h in handles])
        self.row_order = torch.argsort(index, stable=True)
        self.prompt_count = torch.bincount(index, minlength=manifest["num_prompts"])
        self.prompt_first = self.prompt_count.cumsum(0) - self.prompt_count
        self.shard_start = torch.tensor([0] + [s["samples"] for s in manifest["shards"]]).cumsum(0)[:-1]

    @classmethod
    def open(
        cls,
        folder: Path,
        base: BaseModel,
        prompts: list[str],
        num_milestones: int | None = None,
        skip: int | None = None,
        guidance_scale: float | None = None,
        prompt_file: Path | None = None,
        images: Path | None = None,
        caption_column: str = "text",
    ) -> TrajectoryCache:
        """Validate ``folder`` against the run (teacher, latent shape, prompts; M, k, w unless None)
        and every shard (sha256, keys, shapes, dtype); any mismatch raises a one-line TLCMError whose
        rebuild command names the run's prompts: ``prompt_file``, or the captions of ``images``
        (read by ``caption_column``); neither: the miniature prompts."""
        folder = Path(folder)
        captions = (images, caption_column)
        hint = rebuild_command(
            base.path,
            folder,
            prompt_file,
            num_milestones,
            skip,
            guidance_scale,
            *captions,
            base.max_sequence_length,
        )

        def refuse(where: Path, what: str) -> TLCMError:
            return TLCMError(f"trajectory cache {where}: {what}; {hint}")

        path = folder / "manifest.json"
        try:
            manifest = json.loads(path.read_text())
            check_fields(manifest, MANIFEST_FIELDS, "manifest.json")
            for shard in manifest["shards"]:
                check_fields(shard, SHARD_FIELDS, "a shard of manifest.json")
            found = (manifest["format"], manifest["version"])
            grid = trajectory_grid(base.schedule, manifest["num_milestones"], manifest["skip"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise refuse(path, f"unreadable manifest ({type(err).__name__}: {err})") from err
        if found != (FORMAT, VERSION) or manifest.get("dtype") not in DTYPES:
            raise refuse(
                path,
                f"format differs (expected {(FORMAT, VERSION)} in one of {list(DTYPES)}, "
                f"found {found} in {manifest.get('dtype')})",
            )
        expected = {
            "teacher_fingerprint": teacher_fingerprint(base.path),
            "latent_shape": list(base.latent_shape),
            "prompts": prompts,
            "grid": grid,
            "num_milestones": num_milestones,
            "skip": skip,
            "guidance_scale": guidance_scale,
        }
        for key, want in expected.items():
            found = manifest.get(key)
            if want is None or found == want:
                continue
            if key == "prompts":
                i = next((i for i, (a, b) in enumerate(zip(want, found or [], strict=False)) if a != b), None)
                i = min(len(want), len(found or [])) if i is None else i
                got = f"{len(found or [])} prompts, #{i} = {(found or [])[i : i + 1]}"
                want, found = f"{len(want)} prompts, #{i} = {want[i : i + 1]}", got
            elif key == "teacher_fingerprint":
                older = "" if ":" in str(found) else f" ({OLD_FINGERPRINT})"
                want, found = f"{want} of {base.path}", f"{found} of {manifest.get('model')}{older}"
            raise refuse(path, f"{key} differs (expected {want}, found {found})")
        check_teacher(manifest, base, folder, lambda what: refuse(path, what))
        handles = []
        for shard in manifest["shards"]:
            file, n = folder / shard["file"], shard["samples"]
            if not file.is_file():
                raise refuse(file, "shard listed in manifest.json is missing")
            if (digest := sha256_file(file)) != shard["sha256"]:
                raise refuse(file, f"corrupted: sha256 differs (expected {shard['sha256']}, found {digest})")
            handle = safe_open(file, framework="pt")
            if (keys := sorted(handle.keys())) != ["prompt_index", "states"]:
                raise refuse(file, f"keys differ (expected ['prompt_index', 'states'], found {keys})")
            states, index = handle.get_slice("states"), handle.get_slice("prompt_index")
            layout = (states.get_shape(), states.get_dtype(), index.get_shape(), index.get_dtype())
            want = ([n, len(grid), *base.latent_shape], DTYPES[manifest["dtype"]][1], [n], "I64")
            if layout != want:
                what = "(states shape, dtype, prompt_index shape, dtype)"
                raise refuse(file, f"{what} differ (expected {want}, found {layout})")
            handles.append(handle)
        cache = cls(folder, manifest, handles, base.schedule)
        cache.prompt_file, cache.captions = prompt_file, captions
        cache.max_sequence_length = base.max_sequence_length
        if len(cache.prompt_count) != len(prompts) or int(cache.prompt_count.min()) < 1:
            counts = cache.prompt_count.tolist()
            raise refuse(folder, f"samples per prompt differ (expected >= 1 each, found {counts})")
        return cache

    def require(self, num_milestones: int, skip: int) -> None:
        """Raise TLCMError unless the cache was built for these M and k (the MLCD loss calls it)."""
        checks = (
            ("num_milestones", num_milestones, self.num_milestones, "--recipes.student.grid.num-milestones"),
            ("skip", skip, self.skip, "the MLCD loss's skip"),
        )
        for name, want, found, owner in checks:
            if want != found:
                w = self.manifest["guidance_scale"]
                rebuild = rebuild_command(
                    self.manifest["model"],
                    self.folder,
                    self.prompt_file,
                    num_milestones,
                    skip,
                    w,
                    *self.captions,
                    self.max_sequence_length,
                )
                raise TLCMError(
                    f"trajectory cache {self.folder}: {name} differs (expected {want} by {owner}, "
                    f"found {found}); {rebuild}"
                )

    def sample(
        self, prompt_index: torch.Tensor, generator: torch.Generator, device: torch.device | None = None
    ) -> TrajectoryStates:
        """MLCD states for the prompts ``prompt_index`` (B,), drawn with ``generator`` only (exact resume).

        Segment s uniform in 0..M-1, t_m uniform over its grid points above t_s, t_n the next grid point,
        one of the prompt's trajectories uniform. Returns x_tm, x_tn (B, C, h, w) float32 and t_m, t_n,
        t_s (B,) on ``device`` (default: prompt_index's). Rows are read on the host from the
        memory-mapped shards: with a host ``generator`` (the step's ``host_generator``) and host prompt
        indices that costs no device sync; prompt indices on the device cost one (their copy to the
        host). The states and timesteps go to ``device`` in two non-blocking copies.
        """
        device = prompt_index.device if device is None else device
        b, on = len(prompt_index), generator.device
        seg = torch.randint(self.num_milestones, (b,), generator=generator, device=on)
        u, v = torch.rand(2, b, generator=generator, device=on, dtype=torch.float64)
        together = prompt_index.device == on  # float64 holds these integers exactly
        host = torch.stack([seg.double(), u, v, *([prompt_index.double()] if together else [])]).cpu()
        seg, u, v = host[0].long(), host[1], host[2]
        pos = self.seg_first[seg] + (u * (self.seg_lower[seg] - self.seg_first[seg])).long()
        prompts = (host[3] if together else prompt_index.cpu()).long()
        rows = self.row_order[self.prompt_first[prompts] + (v * self.prompt_count[prompts]).long()]
        shard = torch.searchsorted(self.shard_start, rows, right=True) - 1
        reads = zip(shard.tolist(), (rows - self.shard_start[shard]).tolist(), pos.tolist(), strict=True)
        pairs = torch.stack([self._slices[s][r, p : p + 2] for s, r, p in reads])
        pairs = pairs.to(device, torch.float32, non_blocking=True)
        times = torch.stack([self.grid[pos], self.grid[pos + 1], self.edges[seg]])
        t_m, t_n, t_s = times.to(device, non_blocking=True)
        return TrajectoryStates(pairs[:, 0], t_m, t_n, t_s, pairs[:, 1])


@dataclass
class CacheArgs:
    """Precompute the teacher's CFG-DDIM trajectories for MLCD with states="cache"."""

    model: Path = MINIATURE_SD
    """Local diffusers folder of the teacher (default: the miniature pipeline)."""
    prompts: Path | None = None
    """Prompt file (.txt / .jsonl): the run's --recipes.data.prompts (None: the miniature prompts)."""
    images: Path | None = None
    """Or the run's --recipes.data.images (image folder or shards): their captions are the prompts,
    in the run's order."""
    caption_column: str = "text"
    """The metadata.jsonl field holding --images' captions (the run's --recipes.data.caption-column)."""
    out: Path = Path("cache/trajectories")
    """Output folder (shards + manifest.json); a cache already there is replaced."""
    samples_per_prompt: int = 8
    """Trajectories (initial noises) per prompt."""
    num_milestones: int = 8
    """M, as the recipe's --recipes.student.grid.num-milestones."""
    skip: int = 20
    """k, as the MLCD loss's skip."""
    guidance_scale: float = TEACHER_GUIDANCE_SCALE
    """Teacher CFG scale w, as the recipe's --recipes.model.guidance-scale."""
    seed: int = 0
    """Seed of the initial noises."""
    shard_size: int = 256
    """Trajectories per shard file."""
    batch_size: int = 64
    """Trajectories per teacher call (each call is a cond+uncond pair: batch 2 x this)."""
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"
    """Storage dtype of the states (read back as float32)."""
    device: str = "auto"
    """"auto" (cuda if available, else cpu), or a torch device string."""
    frozen_dtype: FrozenDtype = "auto"
    """The teacher's weight dtype, as the run's --recipes.model.frozen-dtype ("auto": bf16 with bf16
    autocast on CUDA, as training's default; fp32 on the CPU)."""
    max_sequence_length: int | None = None
    """T5 tokens of SD3 / FLUX prompts, as the run's --recipes.model.max-sequence-length (None: the
    family's default)."""


def check_cache_args(args: CacheArgs) -> None:
    """The checks that need no model (counts, M and k, device, folders): one-line TLCMErrors."""
    from tlcm.models.folders import check_model_folder, scheduler_timesteps

    for flag, value in (
        ("--samples-per-prompt", args.samples_per_prompt),
        ("--shard-size", args.shard_size),
        ("--batch-size", args.batch_size),
        ("--num-milestones", args.num_milestones),
        ("--skip", args.skip),
        ("--max-sequence-length", args.max_sequence_length),
    ):
        if value is not None and value < 1:
            raise TLCMError(f"{flag} must be >= 1, got {value}")
    if not math.isfinite(args.guidance_scale):
        raise TLCMError(f"--guidance-scale must be a finite number, got {args.guidance_scale}")
    check_device(args.device, "--device")
    check_seed(args.seed, "--seed", limit=2**43)  # row seeds are seed * 1_000_003 + row: int64
    check_model_folder(args.model, "--model")
    steps = scheduler_timesteps(args.model)
    if args.num_milestones > steps:
        raise TLCMError(f"--num-milestones {args.num_milestones} must be in 1..{steps} (T of {args.model})")
    if args.skip > steps // args.num_milestones:
        raise TLCMError(
            f"--skip {args.skip} must be in 1..{steps // args.num_milestones} "
            f"(T/M = {steps}/{args.num_milestones}; T of {args.model}, M = --num-milestones)"
        )
    check_out_dir(args.out, "--out")


def main(args: CacheArgs) -> dict:
    """Build the cache, print what was written and the teacher UNet calls; returns the manifest."""
    if args.images and args.prompts:
        raise TLCMError("--images and --prompts: pass one (an image folder's captions are its prompts)")
    if not args.images:
        prompts = load_prompts(args.prompts, flag="--prompts")  # before check_cache_args makes --out
    check_cache_args(args)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    from tlcm.models.base import BaseModel, frozen_dtype

    weights = frozen_dtype(args.frozen_dtype, device, autocast=True)
    length = args.max_sequence_length
    base = BaseModel.load(args.model, device, weights, "--model", max_sequence_length=length)
    bf16 = torch.device(device).type == "cuda"  # training's "auto" mixed precision
    if args.images:  # the captions as the training run reads them (tlcm.engine)
        source = open_images(args.images, model_resolution(base), args.caption_column, "--images")
        prompts = [source.text(i) for i in range(len(source))]
    start = time.perf_counter()
    with (
        Progress(console=Console(stderr=True), transient=True) as progress,
        torch.autocast(torch.device(device).type, torch.bfloat16, enabled=bf16, cache_enabled=False),
    ):
        manifest = build_cache(
            base,
            prompts,
            args.out,
            args.samples_per_prompt,
            args.num_milestones,
            args.skip,
            args.guidance_scale,
            args.seed,
            args.shard_size,
            args.batch_size,
            args.dtype,
            progress,
        )
    mib = sum((args.out / s["file"]).stat().st_size for s in manifest["shards"]) / 2**20
    Console().print(
        f"wrote {len(prompts)} prompts x {args.samples_per_prompt} trajectories x {len(manifest['grid'])} "
        f"states ({args.dtype}, {len(manifest['shards'])} shard(s), {mib:.1f} MiB) to {args.out} in "
        f"{time.perf_counter() - start:.1f} s; teacher UNet calls: {manifest['teacher_unet_calls']} "
        "(each a batched cond+uncond CFG pair)",
        highlight=False,
    )
    return manifest


def cli(args: list[str] | None = None) -> dict:
    """The command line: parse ``args`` (default: sys.argv) and build the cache."""
    return main(tyro.cli(CacheArgs, args=cli_args(args), prog="python -m tlcm.data.trajectories"))


if __name__ == "__main__":
    run_cli(cli)
