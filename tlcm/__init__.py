"""tlcm: distil latent diffusion models into 2-8 step students (TLCM, arXiv 2406.05768)."""

__all__ = ["TLCMFlowScheduler", "TLCMScheduler"]


def __getattr__(name: str):
    """``tlcm.TLCMScheduler`` / ``tlcm.TLCMFlowScheduler``, imported on first use: diffusers takes
    seconds to import, which every ``import tlcm.<module>`` (and ``--help``) would pay."""
    if name in __all__:
        from tlcm.diffusion import scheduler

        return getattr(scheduler, name)
    if name == "SchedulerMixin":  # diffusers' loader reads a model_index.json entry ["tlcm", class]
        from diffusers import SchedulerMixin  # as a scheduler by this name (an exported pipeline)

        return SchedulerMixin
    raise AttributeError(f"module 'tlcm' has no attribute {name!r}")
