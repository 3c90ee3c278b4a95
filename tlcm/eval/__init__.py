"""Offline evaluation of real (SD1.5 / SDXL) teachers and students, the way the papers report them.

``python -m tlcm.evaluate generate`` writes one image per prompt of a prompt set (COCO-2017
captions, PartiPrompts, HPSv2 benchmark, .txt / .jsonl) with fixed per-prompt noise, resumably and
split across torchrun processes; ``python -m tlcm.evaluate score`` scores such folders (FID,
FID-T, CLIP score, PickScore, HPSv2.1, ImageReward, LAION aesthetic) from local weight files and
writes the results table (markdown + json) and an image grid. docs/evaluation.md has the recipe.

- ``prompts``: prompt-set parsers; ``pipeline``: base + student + sampler as a diffusers pipeline;
  ``generate``: the generation loop; ``weights``: where each metric's weights come from;
  ``fid``: Inception features and the Frechet distance; ``metrics``: the per-image scorers;
  ``imagereward``: ImageReward on transformers' BLIP modules; ``table``: table and grid;
  ``score``: the scoring command.
"""
