"""The tests' tiny random diffusers pipelines: tlcm/toy/tiny.py (in the library, so that the
benchmarks and the test workers build the same ones), re-exported here, and the reward tests' prompts.
"""

from tlcm.toy.tiny import (  # noqa: F401 - re-exported for the tests
    IMAGE_SIZE,
    SD_SCHEDULER,
    T5_EOS,
    T5_PAD,
    T5_SPACE,
    T5_UNK,
    save_tiny_clip,
    tiny_clip_tokenizer,
    tiny_flux_pipeline,
    tiny_sd3_pipeline,
    tiny_sd_pipeline,
    tiny_sdxl_pipeline,
    tiny_t5,
    tiny_t5_tokenizer,
)

CLIP_PROMPTS = ["a red cube", "a blue ball"]
"""Prompts of the reward tests."""
