"""Recipe presets: ``python -m tlcm.train recipes:NAME``. Add your own by writing a function that
returns a ``tlcm.config.Recipe`` and adding it to PRESETS (no change to tlcm/ needed)."""

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
