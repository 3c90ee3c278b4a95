"""Diffusion core: VP/flow schedules, denoisers (the guided teacher), DDIM/multistep solvers,
milestones and the TLCM schedulers.

The names below are imported from their submodule on first use, so that importing one submodule
(e.g. ``tlcm.diffusion.milestones`` for the recipe tree) does not import diffusers. (The function
``milestones`` shares its module's name: import it from ``tlcm.diffusion.milestones``.)
"""

_SUBMODULES = {
    "milestones": (
        "inference_milestone_indices",
        "inference_timesteps",
        "sample_segment_timesteps",
        "segment_index",
    ),
    "schedule": ("FlowSchedule", "Schedule", "VPSchedule", "expand_like", "schedule_from_config"),
    "scheduler": ("TLCMFlowScheduler", "TLCMScheduler", "TLCMSchedulerOutput"),
    "denoiser": ("Denoiser", "Guided"),
    "solvers": ("ddim_step", "mds_trajectory", "teacher_solve", "tlcm_step"),
}
_WHERE = {name: module for module, names in _SUBMODULES.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    """A name of ``__all__``, from its submodule."""
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"tlcm.diffusion.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'tlcm.diffusion' has no attribute {name!r}")
