"""Recipe presets: ``python -m tlcm.train recipes:NAME``. Add your own by writing a function that
returns a ``tlcm.config.Recipe`` and adding it to PRESETS (no change to tlcm/ needed)."""

from recipes.tlcm import lcd, mlcd, tlcm_full, tlcm_full_sdxl

PRESETS = {
    "tlcm-full": tlcm_full(),
    "mlcd": mlcd(),
    "lcd": lcd(),
    "tlcm-full-sdxl": tlcm_full_sdxl(),
}
"""Preset name -> Recipe (the subcommands of tlcm.train)."""
