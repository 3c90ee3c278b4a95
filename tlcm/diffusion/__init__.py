"""Diffusion core: VP/flow schedules, DDIM/CFG/multistep solvers, milestones and the TLCM schedulers."""

from tlcm.diffusion.milestones import (
    inference_milestone_indices,
    inference_timesteps,
    milestones,
    sample_segment_timesteps,
    segment_index,
)
from tlcm.diffusion.schedule import FlowSchedule, Schedule, VPSchedule, expand_like, schedule_from_config
from tlcm.diffusion.scheduler import TLCMFlowScheduler, TLCMScheduler, TLCMSchedulerOutput
from tlcm.diffusion.solvers import (
    Denoiser,
    ddim_step,
    guided_output,
    mds_trajectory,
    teacher_solve,
    tlcm_step,
)

__all__ = [
    "Denoiser",
    "FlowSchedule",
    "Schedule",
    "TLCMFlowScheduler",
    "TLCMScheduler",
    "TLCMSchedulerOutput",
    "VPSchedule",
    "ddim_step",
    "expand_like",
    "guided_output",
    "inference_milestone_indices",
    "inference_timesteps",
    "mds_trajectory",
    "milestones",
    "sample_segment_timesteps",
    "schedule_from_config",
    "segment_index",
    "teacher_solve",
    "tlcm_step",
]
