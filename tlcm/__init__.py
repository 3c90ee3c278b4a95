"""tlcm: distil latent diffusion models into 2-8 step students (TLCM, arXiv 2406.05768)."""

from tlcm.diffusion.scheduler import TLCMFlowScheduler, TLCMScheduler

__all__ = ["TLCMFlowScheduler", "TLCMScheduler"]
