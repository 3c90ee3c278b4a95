"""Prompts and images of the miniature pipeline (scikit-learn's handwritten digits).

The image side is needed only by the build script (it imports scikit-learn); the prompt side is
used everywhere (evaluation prompt set, default prompt source of the recipes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEMPLATES = (
    "a handwritten digit {word}",
    "the number {digit}, handwritten",
    "a drawing of the digit {word}",
    "handwritten {word}",
)
IMAGE_SIZE = 32
"""Side of the miniature pipeline's images in pixels (the 8x8 digits upsampled 4x)."""


def prompt_digit(prompt: str) -> int:
    """The digit a miniature prompt asks for ("seven" or "7"); ValueError if it names none."""
    for word in prompt.replace(",", " ").split():
        if word in DIGIT_WORDS:
            return DIGIT_WORDS.index(word)
        if word.isdigit() and len(word) == 1:
            return int(word)
    raise ValueError(f"prompt {prompt!r} names no digit: the digit reward needs miniature prompts")


def prompt_for(digit: int, template: int = 0) -> str:
    """The prompt that asks for ``digit`` (0-9) with the ``template``-th template."""
    return TEMPLATES[template % len(TEMPLATES)].format(word=DIGIT_WORDS[digit], digit=digit)


def all_prompts() -> list[str]:
    """Every training prompt: 10 digits x len(TEMPLATES) templates."""
    return [prompt_for(d, k) for d in range(10) for k in range(len(TEMPLATES))]


def eval_prompts(samples_per_digit: int = 50) -> tuple[list[str], torch.Tensor]:
    """The fixed evaluation prompt set: ``10 * samples_per_digit`` prompts and their digits.

    Returns (prompts, labels) with labels a LongTensor of shape (N,); prompts cycle through the
    templates so that every template is evaluated.
    """
    prompts, labels = [], []
    for i in range(samples_per_digit):
        for d in range(10):
            prompts.append(prompt_for(d, i))
            labels.append(d)
    return prompts, torch.tensor(labels)


PLACEMENTS = 0
"""Random placements of each of the 1797 UCI digits in the miniature's image distribution (0: the
digits as they are, full-canvas; what the shipped miniature was built with). Placed digits were a
tried rebuild (docs/toy.md, "Rebuilds")."""


PLACE_SIZE = (0.55, 0.85)
"""Range of a placed digit's side, as a fraction of the canvas (`place`)."""


def place(
    x: torch.Tensor, generator: torch.Generator, size: tuple[float, float] = PLACE_SIZE
) -> torch.Tensor:
    """Shrink each of (N, C, H, W) digits to ``size`` (fraction of the canvas), rotate it by up to 15
    degrees and put it anywhere it fits. Background -1. This spread of sizes and positions per prompt
    is what makes few-step sampling hard: the mean of a prompt's images is a smear, not a digit."""
    n = x.shape[0]
    u = torch.rand(n, 4, generator=generator, device=generator.device).to(x.device)
    s = size[0] + (size[1] - size[0]) * u[:, 0]
    angle = (u[:, 1] * 2 - 1) * 0.2618
    centre = (u[:, 2:] * 2 - 1) * (1 - s)[:, None]
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    a = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)  # (N, 2, 2)
    b = -(a @ centre[:, :, None])  # the output point `centre` samples the input's centre
    grid = F.affine_grid(torch.cat([a, b], 2), list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, align_corners=False, padding_mode="zeros") - 1


INKS = 2
"""Inks of the miniature's digits: 1 = white on black (the first shipped build); 2 = every digit also
black on white (the shipped build). The prompt never says which, so a sampler must commit to one:
the mean of a prompt's images is a grey, low-contrast digit, which is what 1-2 deterministic DDIM
steps drift towards (docs/toy.md)."""


def load_digit_images(
    placements: int = PLACEMENTS,
    seed: int = 0,
    inks: int = INKS,
    size: tuple[float, float] = PLACE_SIZE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The miniature's real images in [-1, 1] and their labels: the 1797 UCI digits (1797, 3, 32, 32)
    for ``placements`` = 0, else each placed ``placements`` times by `place` (fixed seed, ``size``),
    then with ``inks`` = 2 the same images inverted (black on white) appended: shape
    (1797 * max(placements, 1) * inks, 3, 32, 32), image i being digit i % 1797.

    Needs scikit-learn (the build script's extra). Grey values 0..16 are scaled to [-1, 1]
    (background -1) and upsampled bilinearly 4x; the grey image is repeated over RGB so that
    the pipeline is a standard 3-channel one.
    """
    if inks not in (1, 2):
        raise ValueError(f"inks must be 1 (white on black) or 2 (also black on white), got {inks}")
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    x = (x * 2 - 1).clamp(-1, 1).repeat(1, 3, 1, 1)
    y = torch.tensor(digits.target, dtype=torch.long)
    if placements > 0:
        g = torch.Generator().manual_seed(seed)
        x = torch.cat([place(x, g, size) for _ in range(placements)])
        y = y.repeat(placements)
    if inks == 2:
        x, y = torch.cat([x, -x]), y.repeat(2)
    return x, y


def augment(x: torch.Tensor, generator: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Random small affine jitter (rotation <= 10 deg, shift <= 2 px, scale 0.9-1.1) of (N, C, H, W);
    uncovered pixels repeat the border (the background, whichever the ink)."""
    n = x.shape[0]
    u = torch.rand(n, 4, generator=generator, device=generator.device).to(x.device) * 2 - 1
    angle = u[:, 0] * 0.1745 * strength
    scale = 1 + 0.1 * u[:, 1] * strength
    shift = u[:, 2:] * (2 * 2 / x.shape[-1]) * strength
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="border")


def real_pairs(n: int | None = None, seed: int = 0) -> tuple[torch.Tensor, list[str], list[dict]]:
    """The miniature's real training digits as image-text pairs: images (N, 3, 32, 32) in [-1, 1]
    (``load_digit_images()``: both inks), each captioned with its digit's prompt in template
    ``i % len(TEMPLATES)`` (i its index among all 3594, so an image keeps its caption whatever
    ``n``), and rows {"digit", "ink"} (ink "white" on black or "black" on white). ``n``: a subset,
    the first n of a ``seed`` permutation, in index order (None: all). Needs scikit-learn."""
    x, y = load_digit_images()
    keep = torch.arange(len(x))
    if n is not None and n < len(x):
        keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    half = len(x) // INKS
    texts = [prompt_for(int(y[i]), i % len(TEMPLATES)) for i in keep.tolist()]
    rows = [{"digit": int(y[i]), "ink": "white" if i < half else "black"} for i in keep.tolist()]
    return x[keep], texts, rows
