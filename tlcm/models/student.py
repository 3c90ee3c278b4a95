"""The student: peft LoRA adapters on the frozen base network (UNet or transformer; one copy of the
base weights), or a full trainable copy; the teacher is the same network with its adapters off."""

from __future__ import annotations

import copy
import json
import math
import warnings
from dataclasses import replace
from pathlib import Path
from types import MethodType

import torch
from peft import LoraConfig
from peft.tuners.tuners_utils import BaseTunerLayer, cast_adapter_dtype
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

from tlcm.checkpoint import Checkpoint, load_latest
from tlcm.checks import check_lora_targets, present_targets
from tlcm.conditioning import Conditioning
from tlcm.config import StudentConfig
from tlcm.diffusion.milestones import StudentGrid
from tlcm.distributed import full_tensors, is_sharded, shard_like
from tlcm.errors import TLCMError
from tlcm.models.adapters import TEACHER, AdapterSwitch
from tlcm.models.base import BaseModel
from tlcm.models.families import DEFAULT_FAMILY, Family
from tlcm.models.graphs import CallGraphs

STUDENT_ADAPTER = "student"
RECOMPILE_LIMIT = 64
"""dynamo's recompile limit under ``Student.compile`` (graphs per compiled block class)."""


def fp32_copy(base: BaseModel) -> torch.nn.Module:
    """A trainable fp32 copy of the base network: a deep copy of fp32 frozen weights, else reloaded
    from the folder in fp32 (an upcast bf16 copy would lose the saved weights' low bits)."""
    if base.net.dtype == torch.float32:
        return copy.deepcopy(base.net)
    folder = base.path / base.family.net
    net = type(base.net).from_pretrained(folder, dtype=torch.float32, local_files_only=True)
    return net.to(base.device)


def without_adapters(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` with every peft LoRA adapter deleted, in place (a copy of the base network holds the
    student's and the auxiliaries'); returned for chaining."""
    if getattr(net, "peft_config", None):  # the base's copy, without the student's adapters
        with warnings.catch_warnings():  # peft warns that the active adapter goes: intended
            warnings.simplefilter("ignore", UserWarning)
            net.delete_adapters(list(net.peft_config))
    return net


def weights_of(net: torch.nn.Module, adapter: str | None) -> dict[str, torch.Tensor]:
    """Full-tensor copies of ``net``'s weights (``adapter`` None) or of the peft state dict of
    LoRA ``adapter``; under FSDP2 gathered from the shards (a collective: every process calls it)."""
    state = net.state_dict() if adapter is None else get_peft_model_state_dict(net, adapter_name=adapter)
    return {k: v.detach().clone() for k, v in full_tensors(state).items()}


def load_weights(net: torch.nn.Module, state: dict[str, torch.Tensor], adapter: str | None) -> None:
    """Inverse of ``weights_of``: full tensors into ``net`` (sharded like its FSDP2 parameters)."""
    live = net.state_dict() if adapter is None else get_peft_model_state_dict(net, adapter_name=adapter)
    state = {k: shard_like(v, live[k]) if k in live else v for k, v in state.items()}
    if adapter is None:
        net.load_state_dict(state)
    else:
        set_peft_model_state_dict(net, state, adapter_name=adapter)


def fresh_lora_state(net: torch.nn.Module, adapter: str) -> dict[str, torch.Tensor]:
    """A fresh initialisation of LoRA ``adapter`` as full CPU tensors in key order, from the global
    RNG: A (r, in) ~ U(-1/sqrt(in), 1/sqrt(in)) (peft's default: kaiming-uniform with a = sqrt(5)),
    B = 0, so the adapter starts as the base network. The same on every process and whether or not
    the network is sharded (the draws do not depend on the layout)."""
    state = get_peft_model_state_dict(net, adapter_name=adapter)
    fresh = {}
    for key in sorted(state):
        shape, dtype = state[key].shape, state[key].dtype
        if "lora_A" in key:
            bound = (1.0 / math.prod(shape[1:])) ** 0.5
            fresh[key] = torch.empty(shape, dtype=torch.float32).uniform_(-bound, bound).to(dtype)
        else:
            fresh[key] = torch.zeros(shape, dtype=dtype)
    return fresh


class Student:
    """Holds the trainable network and gives student / teacher denoisers over it.

    LoRA (default): ``net`` IS the base network with a "student" adapter; the teacher call runs it
    with adapters disabled. Full fine-tune: ``net`` is a deep copy; the base stays the teacher.
    ``config.target_modules`` is resolved here (empty: the family's default targets).
    """

    def __init__(self, base: BaseModel, config: StudentConfig) -> None:
        targets = tuple(config.target_modules) or present_targets(base.net, base.family.lora_targets)
        config = replace(config, target_modules=targets)
        self.base, self.config = base, config
        if config.full_finetune:
            self.net = fp32_copy(base).requires_grad_(True).train()
        else:
            check_lora_targets(base.net, config.target_modules)
            if not hasattr(base.net, "add_adapter"):  # diffusers' PeftAdapterMixin: PixArt's lacks it
                raise TLCMError(
                    "a LoRA student needs diffusers' LoRA hooks (PeftAdapterMixin: add_adapter, "
                    f"set_adapter, delete_adapters) on the network, and {type(base.net).__name__} of "
                    f"{base.path} has none: train every weight with --recipes.student.full-finetune, or "
                    "give the class those hooks in your family's load"
                )
            self.lora_config = LoraConfig(
                r=config.lora_rank,
                lora_alpha=config.lora_alpha,
                init_lora_weights="gaussian",
                target_modules=list(config.target_modules),
            )
            base.net.add_adapter(self.lora_config, adapter_name=STUDENT_ADAPTER)
            cast_adapter_dtype(base.net, STUDENT_ADAPTER)  # fp32 on bf16 / fp16 frozen weights
            self.net = base.net
        self.adapters = AdapterSwitch(self.net, None if config.full_finetune else STUDENT_ADAPTER)

    @classmethod
    def from_run(cls, base: BaseModel, run_dir: Path) -> Student:
        """The LoRA student of a tlcm run folder (its latest loadable checkpoint) on ``base``, with
        the LoRA config and student grid it was trained with."""
        latest = load_latest(Path(run_dir), base.device)
        if latest is None:
            raise TLCMError(f"{run_dir} has no checkpoint: pass a tlcm run folder (e.g. runs/tlcm-full)")
        ranks = [v.shape[0] for k, v in latest.student.items() if "lora_A" in k]
        if not ranks:
            raise TLCMError(
                f"{latest.folder} holds a full fine-tune, not a LoRA: "
                f"load its {base.family.net}/ export instead"
            )
        meta = latest.metadata
        config = StudentConfig(
            lora_rank=ranks[0],
            lora_alpha=float(meta.get("lora_alpha", ranks[0])),  # checkpoints before 0.2: alpha = rank
            target_modules=tuple(json.loads(meta.get("target_modules", "[]"))),  # []: family default
            grid=StudentGrid(
                int(meta.get("num_milestones", 8)),
                int(meta.get("student_steps", 4)),
                float(meta.get("gamma", 1.0)),
                first_gamma=float(meta["first_gamma"]) if meta.get("first_gamma") else None,
            ),
        )
        student = cls(base, config)
        student.load_state_dict(latest.student)
        return student

    def metadata(self) -> dict[str, str]:
        """The LoRA config (rank, alpha, targets) and the student grid as strings, stored in
        checkpoints for ``from_run`` and for the checks of resume / init_from."""
        c = self.config
        grid = {
            "num_milestones": str(c.grid.num_milestones),
            "student_steps": str(c.grid.steps),
            "gamma": str(c.grid.gamma),
            "first_gamma": "" if c.grid.first_gamma is None else str(c.grid.first_gamma),
        }
        if c.full_finetune:
            return {"full_finetune": "true", **grid}
        return {
            "lora_rank": str(c.lora_rank),
            "lora_alpha": str(c.lora_alpha),
            "target_modules": json.dumps(list(c.target_modules)),
            **grid,
        }

    def load_checkpoint(self, checkpoint: Checkpoint, source: str, same_grid: bool = True) -> None:
        """Load a checkpoint's student weights after checking that it was trained with this
        student's settings (LoRA rank / alpha / targets, full fine-tune or not, and with
        ``same_grid`` the grid: a resume must keep it, a next stage may change it); ``source``
        names the checkpoint in the one-line refusal (a flag or a folder)."""
        saved, mine = checkpoint.metadata, self.metadata()
        keys = ["full_finetune", "lora_rank", "lora_alpha", "target_modules"]
        keys += ["num_milestones", "student_steps"] if same_grid else []
        differ = [
            f"{k} {saved[k]} != {mine.get(k, '-')}" for k in keys if k in saved and saved[k] != mine.get(k)
        ]
        if differ:
            raise TLCMError(
                f"{source} was trained with other student settings ({'; '.join(differ)}; saved != "
                "this recipe): use the same --recipes.student.* values as the run that wrote it"
            )
        self.load_state_dict(checkpoint.student)

    def trainable_parameters(self) -> dict[str, torch.nn.Parameter]:
        """Name -> parameter of everything the student's optimizer updates (not auxiliary adapters)."""
        own = (lambda n: True) if self.config.full_finetune else (lambda n: f".{STUDENT_ADAPTER}." in n)
        return {n: p for n, p in self.net.named_parameters() if p.requires_grad and own(n)}

    def add_adapters(self, ranks: dict[str, int]) -> None:
        """Add the auxiliary LoRA adapters ``{name: rank}`` (rank 0: the student's) that the run's
        losses will train (``LossConfig.adapters``), before the network is sharded: FSDP2 manages
        only parameters that exist when ``fully_shard`` runs. Their parameters are trainable from
        the start (FSDP2 reads requires_grad once); only their owners' optimizers step them, and
        ``auxiliary`` gives each a fresh initialisation when its loss is built."""
        if self.config.full_finetune or not ranks:
            return
        device = self.base.device
        cuda = [device] if device.type == "cuda" else []
        with warnings.catch_warnings(), torch.random.fork_rng(devices=cuda):  # peft's random init
            warnings.simplefilter("ignore", UserWarning)  # (replaced by auxiliary) draws nothing here
            for name, rank in ranks.items():
                self._add_adapter(name, rank or self.config.lora_rank)
        self.net.set_adapter(STUDENT_ADAPTER)  # add_adapter activated the last one and froze the rest
        for name in self.net.peft_config:  # the adapters added before these too: kept trainable
            for p in self.adapter_parameters(name):
                p.requires_grad_(True)

    def _add_adapter(self, name: str, rank: int) -> None:
        config = LoraConfig(r=rank, lora_alpha=float(rank), target_modules=list(self.config.target_modules))
        self.net.add_adapter(config, adapter_name=name)
        cast_adapter_dtype(self.net, name)
        self.adapters.refresh()

    def adapter_parameters(self, name: str) -> list[torch.nn.Parameter]:
        """The parameters of LoRA adapter ``name`` on the network (its FSDP2 shards when sharded)."""
        tag = f".{name}."
        return [p for n, p in self.net.named_parameters() if tag in n]

    def auxiliary(self, name: str, rank: int = 0, full_copy: bool = False) -> Auxiliary:
        """A second trainable network initialised as the TEACHER (DMD's fake score, say).

        Default: the LoRA adapter ``name`` (rank ``rank``, default the student's) on the SAME base
        weights as the student, no second copy in memory; freshly initialised (``fresh_lora_state``:
        zero B, so it starts exactly at the base) from the global RNG, the same on every process.
        It is added here unless ``add_adapters`` made it (a sharded network refuses to grow).
        ``full_copy`` (forced for a full fine-tune student): a trainable deep copy of the base network."""
        if full_copy or self.config.full_finetune:
            return Auxiliary(self, name, without_adapters(fp32_copy(self.base)))
        rank = rank or self.config.lora_rank
        existing = getattr(self.net, "peft_config", {}).get(name)
        if existing is None or existing.r != rank:
            if is_sharded(self.net):
                have = "has none" if existing is None else f"has rank {existing.r}"
                raise TLCMError(
                    f"the LoRA adapter {name!r} (rank {rank}) is needed after the network was sharded "
                    f"(FSDP2), which {have}: declare it in the loss config's adapters() so that the "
                    "engine adds it before sharding"
                )
            if existing is not None:
                self.net.delete_adapters(name)
            self.add_adapters({name: rank})
        load_weights(self.net, fresh_lora_state(self.net, name), name)
        return Auxiliary(self, name, None)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute the network's block activations in backward (``enabled``), each block under
        the adapter selection of its forward (``AdapterSwitch``); the only way to switch it."""
        self.adapters.set_gradient_checkpointing(enabled)

    def compile(self, backend: str = "inductor") -> None:
        """``torch.compile`` each repeated block's ``forward`` (regional compilation: the family's
        ``compile_modules``) of the student's network and, for a full fine-tune, the teacher's, with
        the dynamo ``backend`` (``RuntimeConfig.compile_backend``).

        One compiled code per block class serves every block of it; the adapter selection, grad
        mode and shapes are guards, so each combination compiles once (tiny UNet: 4 graphs for MLCD,
        7 for DMD). Only ``forward`` is compiled: module hooks (FSDP2's, the teacher-feature
        discriminator's taps) and gradient checkpointing's wrapper stay eager around it. Each block's
        ``forward`` is the compiled function bound to that block, so a deep copy of the network (a
        full fine-tune's fake score) runs its own weights through it (bound to the original, it ran
        the teacher's: measured on DMD, relative gradient error 0.23 after three updates).
        dynamo's recompile limit is raised to ``RECOMPILE_LIMIT`` (SDXL's two transformer widths x 3
        adapter selections x grad modes exceed torch's default 8; past the limit a block runs eager).
        """
        import torch._dynamo

        config = torch._dynamo.config
        limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # torch < 2.7
        setattr(config, limit, max(getattr(config, limit), RECOMPILE_LIMIT))
        compiled: dict[type, object] = {}  # one compiled function per block class
        for net in dict.fromkeys([self.net, self.base.net]):
            for block in self.base.family.compile_modules(net):
                cls = type(block)
                if cls not in compiled:
                    compiled[cls] = torch.compile(cls.forward, backend=backend)
                block.forward = MethodType(compiled[cls], block)  # a deep copy binds to the copy

    def use_graphs(self) -> None:
        """Replay the network's calls without gradients from captures (``CallGraphs``: CUDA graphs
        on CUDA) from now on. A capture reads the weights where they live: FSDP2, which gathers
        them into new memory at every call, is refused."""
        if is_sharded(self.net):
            raise TLCMError(
                "--recipes.runtime.graphs replays captured calls, which cannot follow FSDP2's "
                "weights (gathered into new memory at every call): drop --recipes.runtime.graphs "
                "or --recipes.runtime.fsdp"
            )
        self.base.graphs = CallGraphs(self.base.device)

    def denoiser(self):
        """Student denoiser ``(x, t, cond) -> model output`` (gradients flow to the adapters)."""
        return self.base.denoiser(self.net)

    def teacher(self):
        """Frozen base denoiser (every adapter off for the call and for its recomputation in
        backward), for use under no_grad or with gradients to its input only."""
        call = self.base.denoiser()
        if self.config.full_finetune:
            return call

        def teacher_call(x, t, cond):
            with self.adapters.use(TEACHER):
                return call(x, t, cond)

        return teacher_call

    @torch.no_grad()
    def fuse(self) -> None:
        """Merge the student LoRA into the base weights (peft's per-layer merge, what diffusers'
        ``fuse_lora`` does): sampling then skips the adapter's extra matmuls. For inference only.
        A teacher call afterwards (adapters disabled) makes peft unmerge each layer it runs: the
        teacher stays the base network, and the student is unfused from then on (its outputs
        unchanged, the speed-up gone). Drops every capture of the network's calls (merged
        weights may live elsewhere)."""
        if self.base.graphs is not None:
            self.base.graphs.clear()
        for layer in self.adapters.layers:
            layer.merge(adapter_names=[STUDENT_ADAPTER])

    def fused_state_dict(self) -> dict[str, torch.Tensor]:
        """The network's own weights with the student merged in, as a plain diffusers model's state
        dict (keys of ``UNet2DConditionModel`` / the transformer: no ``base_layer``, no adapter):
        W + (alpha / r) B A per LoRA'd layer (peft's ``get_delta_weight``, summed in fp32, stored in
        W's dtype); a layer already merged (``fuse``) is taken as it is. A full fine-tune: its
        weights. Every auxiliary adapter is left out. Not under FSDP2 (shards)."""
        if self.config.full_finetune:
            return self.state_dict()
        deltas = {
            f"{name}.weight": layer.get_delta_weight(STUDENT_ADAPTER)
            for name, layer in self.net.named_modules()
            if isinstance(layer, BaseTunerLayer)
            and STUDENT_ADAPTER in layer.lora_A
            and STUDENT_ADAPTER not in layer.merged_adapters
        }
        fused = {}
        for key, value in self.net.state_dict().items():
            if ".lora_" in key:
                continue
            key = key.replace(".base_layer.", ".")
            if key in deltas:
                value = (value.float() + deltas.pop(key).float()).to(value.dtype)
            fused[key] = value
        if deltas:  # cannot happen (a LoRA layer always wraps its weight); never write half a merge
            raise RuntimeError(f"LoRA layers without their base weight: {', '.join(sorted(deltas)[:3])}")
        return fused

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Trainable weights only (LoRA: peft state dict of the student adapter), full tensors (under
        FSDP2 a collective: every process calls it)."""
        return weights_of(self.net, None if self.config.full_finetune else STUDENT_ADAPTER)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of ``state_dict``; a LoRA of another rank/targets/base is refused clearly."""
        if self.config.full_finetune:
            load_weights(self.net, state, None)
            return
        own = self.state_dict()
        bad = sorted(set(own) ^ set(state)) or [k for k in own if own[k].shape != state[k].shape]
        if bad:
            raise TLCMError(
                "the saved student LoRA does not fit this base model / LoRA config "
                f"(first mismatch: {bad[0]}); "
                "use the same --recipes.student.lora-rank and target modules as the run that wrote it"
            )
        load_weights(self.net, state, STUDENT_ADAPTER)


class Auxiliary:
    """A trainable network beside the student: a LoRA adapter on the shared base (``module`` None)
    or a full copy of the network (``TrainableCopy``: one without a Student). ``denoiser()`` calls
    it; ``parameters()`` go to its owner's optimizer."""

    def __init__(self, student: Student | None, name: str, module: torch.nn.Module | None) -> None:
        self.student, self.name, self.module = student, name, module
        if module is not None:
            module.requires_grad_(True).train()
        for p in self.parameters():
            p.requires_grad_(True)

    def parameters(self) -> list[torch.nn.Parameter]:
        if self.module is not None:
            return list(self.module.parameters())
        return self.student.adapter_parameters(self.name)

    def denoiser(self):
        """``(x, t, cond) -> model output`` of this network (gradients reach its parameters)."""
        if self.module is not None:
            return self.student.base.denoiser(self.module)
        call = self.student.base.denoiser(self.student.net)

        def adapter_call(x, t, cond):
            with self.student.adapters.use(self.name):
                return call(x, t, cond)

        return adapter_call

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self.module is not None:
            return weights_of(self.module, None)
        return weights_of(self.student.net, self.name)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if self.module is not None:
            load_weights(self.module, state, None)
        else:
            load_weights(self.student.net, state, self.name)


class TrainableCopy(Auxiliary):
    """DMD's fake score for a plain network in your own loop (``tlcm.losses.dmd.FakeScore``; no tlcm
    Student): ``DMD(DMDConfig(), TrainableCopy(pipe.unet, family_of(pipe)))``. The full-copy
    ``Auxiliary`` the engine makes with ``Student.auxiliary(full_copy=True)`` (parameters, state
    dicts and training mode are its), on a copy of ``net`` taken here, without ``net``'s LoRA
    adapters, trainable and in fp32: a bf16 / fp16 frozen teacher gives an fp32 copy (AdamW steps of
    lr 1e-4 vanish below bf16's 8 significant bits; the cast is exact, so the copy starts as ``net``
    computes). ``net`` itself is left as it is (frozen stays frozen).

    ``family`` (``tlcm.models.families.family_of(pipe)``) says how to call the network: a diffusers
    ``UNet2DConditionModel`` (SD / SDXL; the default) or an SD3 / FLUX transformer. ``denoiser()``
    is ``(x (B, C, h, w), t (B,), cond) -> model output (B, C, h, w)`` in fp32, the inputs cast to
    fp32 (call it under ``torch.autocast`` to compute in bf16 with fp32 weights).
    """

    def __init__(self, net: torch.nn.Module, family: Family | None = None) -> None:
        module = without_adapters(copy.deepcopy(net)).to(torch.float32)
        super().__init__(None, "copy", module)
        self.family = family or DEFAULT_FAMILY

    def denoiser(self):
        """``(x, t, cond) -> model output`` of the copy (gradients reach its parameters)."""
        net, family = self.module, self.family

        def call(x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
            return family.forward(net, x.float(), t, cond.to(torch.float32)).float()

        return call
