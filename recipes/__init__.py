"""Recipe presets: ``python -m tlcm.train recipes:NAME``. Add your own by writing a function that
returns a ``tlcm.config.Recipe`` and adding it to PRESETS, its line of ``--help`` to DESCRIPTIONS (no
change to tlcm/ needed)."""

from recipes.tlcm import (
    lcd,
    mlcd,
    tlcm_full,
    tlcm_full_flow,
    tlcm_full_flux,
    tlcm_full_sd3,
    tlcm_full_sdxl,
    tlcm_paper,
)
from recipes.zoo import (
    add,
    dmd2,
    hyper_sd_tscd,
    ladd,
    lcm_lora,
    pcm,
    pcm_adv,
    pcm_lcd,
    pcm_lcd_low_w,
    tcd,
    tcd_huber,
    tcd_huber_low_w,
    tcd_huber_phased,
)

PRESETS = {
    "tlcm-full": tlcm_full(),
    "tlcm-paper": tlcm_paper(),
    "mlcd": mlcd(),
    "lcd": lcd(),
    "tlcm-full-sdxl": tlcm_full_sdxl(),
    "tlcm-full-sd3": tlcm_full_sd3(),
    "tlcm-full-flux": tlcm_full_flux(),
    "tlcm-full-flow": tlcm_full_flow(),
    "lcm-lora": lcm_lora(),
    "pcm": pcm(),
    "pcm-adv": pcm_adv(),
    "pcm-lcd": pcm_lcd(),
    "pcm-lcd-low-w": pcm_lcd_low_w(),
    "tcd": tcd(),
    "hyper-sd-tscd": hyper_sd_tscd(),
    "dmd2": dmd2(),
    "add": add(),
    "ladd": ladd(),
    "tcd-huber": tcd_huber(),
    "tcd-huber-phased": tcd_huber_phased(),
    "tcd-huber-low-w": tcd_huber_low_w(),
}
"""Preset name -> Recipe (the subcommands of tlcm.train)."""

DESCRIPTIONS = {
    "tlcm-full": "the default: MLCD -> LCD -> DMD on the UNet miniature (about 6 CPU minutes)",
    "tlcm-paper": "the paper's four phases: MLCD -> LCD -> reward feedback -> DMD + GAN (miniature)",
    "mlcd": "stage 1 only: multistep latent consistency distillation (miniature)",
    "lcd": "stage 2 only, from a stage-1 run (--recipes.student.init-from runs/mlcd)",
    "tlcm-full-sdxl": "the paper's SDXL values: --recipes.model.path /models/sdxl (GPU)",
    "tlcm-full-sd3": "SD3 / SD3.5: --recipes.model.path /models/sd3.5-large (GPU)",
    "tlcm-full-flux": "FLUX.1-dev, FSDP2: --recipes.model.path /models/flux (GPU)",
    "tlcm-full-flow": "tlcm-full on the flow-matching miniature (SD3-like)",
    "lcm-lora": "zoo: LCM-LoRA (arXiv 2311.05556)",
    "pcm": "zoo: PCM, 4 phases (arXiv 2405.18407)",
    "pcm-adv": "zoo: PCM with its adversarial consistency loss",
    "pcm-lcd": "zoo, a composition: TLCM's two stages with PCM's settings",
    "pcm-lcd-low-w": "zoo, a composition: pcm-lcd with w from [1.5, 2.5]",
    "tcd": "zoo: TCD (arXiv 2402.19159)",
    "hyper-sd-tscd": "zoo: Hyper-SD's TSCD stages and its feedback stage (arXiv 2404.13686)",
    "dmd2": "zoo: DMD2, regression-free DMD + GAN (arXiv 2405.14867)",
    "add": "zoo: ADD, adversarial diffusion distillation (arXiv 2311.17042)",
    "ladd": "zoo: LADD, latent ADD with teacher features (arXiv 2403.12015)",
    "tcd-huber": "zoo, a composition: TCD's consistency function with the Huber distance",
    "tcd-huber-phased": "zoo, a composition: tcd-huber on PCM's four phases",
    "tcd-huber-low-w": "zoo, a composition: tcd-huber with w from [1.5, 2.5]",
}
"""Preset name -> its line in ``python -m tlcm.train --help`` (docs/zoo-methods.md: the zoo's
methods and their settings)."""
