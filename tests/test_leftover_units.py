"""Small units that no other test file holds: metrics.jsonl's records (tlcm/report.py) and the
latent LPIPS trainer's held-out split of an image folder (tlcm/latent_lpips/train.py)."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from tlcm.latent_lpips.train import load_images
from tlcm.report import Reporter


def _strict(line: str) -> dict:
    """json.loads that refuses NaN / Infinity / -Infinity (not JSON: other readers reject them)."""

    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(line, parse_constant=refuse)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_nonfinite_value_is_written_as_null_and_named(bad, tmp_path):
    """NaN, +inf and -inf alike: the line is strict JSON, the value is null and its key is in
    "nonfinite"; finite values and non-floats are written as they are."""
    with Reporter(tmp_path) as reporter:
        reporter.report({"global_step": 3, "loss": bad, "norm": 0.5, "phase": "mlcd"}, {})
    (line,) = (tmp_path / "metrics.jsonl").read_text().splitlines()
    record = _strict(line)
    assert record["loss"] is None and record["nonfinite"] == ["loss"]
    assert (record["global_step"], record["norm"], record["phase"]) == (3, 0.5, "mlcd")


def test_last_is_the_value_of_the_last_line_that_has_the_key(tmp_path):
    """``last(key)``: a resumed run's running total continues from the newest line holding it,
    skipping later lines without it and a torn last line; 0 when no line has it."""
    lines = [
        {"global_step": 1, "denoiser_evals": 10},
        {"global_step": 2, "denoiser_evals": 25},
        {"global_step": 3, "loss": 0.1},
    ]
    text = "".join(json.dumps(line) + "\n" for line in lines) + '{"global_step": 4, "denoiser_ev'
    (tmp_path / "metrics.jsonl").write_text(text)
    reporter = Reporter(tmp_path)
    assert reporter.last("denoiser_evals") == 25
    assert reporter.last("loss") == 0.1
    assert reporter.last("absent") == 0


def test_a_folders_last_tenth_by_name_is_held_out(tmp_path):
    """load_images of a folder of 20 images (named so that sorting them by name is their grey
    level k = 0..19, written in shuffled order): 18 train images (levels 0..17) and the last tenth,
    2, held out (levels 18, 19), each resized and centre-cropped to the side asked for."""
    order = np.random.default_rng(0).permutation(20)
    for k in order:
        Image.fromarray(np.full((12, 16, 3), 10 * k, np.uint8)).save(tmp_path / f"img_{k:02d}.png")
    train, heldout = load_images(tmp_path, 8)
    assert train.shape == (18, 3, 8, 8) and heldout.shape == (2, 3, 8, 8)
    assert train[:, 0, 0, 0].tolist() == [10 * k for k in range(18)]
    assert heldout[:, 0, 0, 0].tolist() == [180, 190]
