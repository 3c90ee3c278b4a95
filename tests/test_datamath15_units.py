"""Unit checks of the report metrics and the data stores behind them (red-team round 15, area
datamath): FID statistics saved and reloaded, a damaged statistics cache, FID from two sets by hand,
FID-T against the teacher's folder (not the reference), the toy FD against the reference covariance,
the toy evaluation's seeded noises, the trajectory cache's grid check, and the embedding store's
encoder fingerprint and manifest under two writers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from eval_helpers import write_pngs
from test_data14_units import _refusal, base, cache16  # noqa: F401  (module fixtures: tiny SD, a cache)
from test_eval import MeanColour
from test_eval14_units import _ToyBase
from test_eval_units import MeanPixel, generated

from tlcm.errors import TLCMError

# --------------------------------------------------------------------------------------- FID


def test_fid_statistics_saved_and_loaded_keep_their_count_mean_and_covariance(tmp_path):
    """Features (0, 1), (2, 4), (4, 7) (N = 3): mean (2, 4); deviations (-2, -3), (0, 0), (2, 3):
    unbiased covariance [[8, 12], [12, 18]] / 2 = [[4, 6], [6, 9]]. The cached file (OUT/fid_stats)
    read back gives the same N, mean and covariance (a count off by one biases both)."""
    from tlcm.eval.fid import FeatureStats

    stats = FeatureStats()
    stats.update(torch.tensor([[0.0, 1.0], [2.0, 4.0], [4.0, 7.0]]))
    stats.save(tmp_path / "s.safetensors", {"files": 3})
    loaded = FeatureStats.load(tmp_path / "s.safetensors")
    mu, sigma = loaded.mean_cov()
    assert loaded.n == 3
    torch.testing.assert_close(mu, torch.tensor([2.0, 4.0], dtype=torch.float64))
    torch.testing.assert_close(sigma, torch.tensor([[4.0, 6.0], [6.0, 9.0]], dtype=torch.float64))


def test_a_damaged_statistics_cache_is_measured_anew(tmp_path):
    """A cache file that is no safetensors (an interrupted write, a stray file under the key's
    name) is a miss: the statistics are measured again (and the file rewritten), no traceback."""
    from tlcm.eval.fid import cached_stats, image_stats, stats_key

    files = write_pngs(tmp_path / "ref", 3, size=8)
    cache = tmp_path / "cache"
    cache.mkdir()
    key = stats_key(files, "inception")  # MeanColour has no weights_file: image_stats' default
    (cache / f"{key}.safetensors").write_bytes(b"\xff" * 64)
    stats = image_stats(MeanColour(), files, 2, cache)
    fresh = image_stats(MeanColour(), files, 2, None)
    assert stats.n == 3
    torch.testing.assert_close(stats.sum, fresh.sum)
    torch.testing.assert_close(cached_stats(cache, key).outer, fresh.outer)


def test_fid_of_two_one_dimensional_sets_by_hand():
    """a = {0, 2}: mean 1, variance 2; b = {3, 5}: mean 4, variance 2. FD = (1 - 4)^2 + 2 + 2
    - 2 sqrt(2 * 2) = 9 (each set against itself: 0)."""
    from tlcm.eval.fid import FeatureStats, fid_from_stats

    a, b = FeatureStats(), FeatureStats()
    a.update(torch.tensor([[0.0], [2.0]]))
    b.update(torch.tensor([[3.0], [5.0]]))
    assert fid_from_stats(a, b) == pytest.approx(9.0, abs=1e-9)
    assert fid_from_stats(b, a) == pytest.approx(9.0, abs=1e-9)
    assert fid_from_stats(a, a) == pytest.approx(0.0, abs=1e-9)


def test_fid_t_compares_with_the_teachers_folder_and_fid_with_the_reference(tmp_path, monkeypatch):
    """FID-T is the distance to the teacher's images (same prompts and noise), FID the distance to
    the real reference images: a teacher folder holding copies of the student's images gives FID-T
    0 while the FID to the (other) reference images stays > 0."""
    from tlcm.eval import score as score_mod

    monkeypatch.setattr(score_mod, "load_inception", lambda path, device: MeanPixel())
    student = generated(tmp_path / "student", "student", ["a", "b", "c"])
    teacher = tmp_path / "teacher"
    shutil.copytree(student, teacher)
    write_pngs(tmp_path / "coco", 4, size=40)
    args = score_mod.ScoreArgs(
        images=(student,), out=tmp_path / "out", metrics=("fid", "fid-t"), reference=tmp_path / "coco",
        teacher=teacher, device="cpu", batch_size=2, grid_prompts=0,
    )  # fmt: skip
    (row,) = score_mod.score(args)
    assert row["fid-t"] == pytest.approx(0.0, abs=1e-6)
    assert row["fid"] > 1e-3


def test_hps_preprocessing_resizes_the_tensor_not_the_8_bit_image(monkeypatch):
    """HPSv2's evaluation transform (its open_clip fork's ``image_transform``, is_train False) is
    ToTensor, bicubic Resize of the short side, CenterCrop, Normalize: the resize acts on the float
    tensor, so nothing is rounded to 8 bits after it (CLIP's own order resizes the PIL image)."""
    import numpy as np
    from PIL import Image
    from torchvision import transforms as T

    from tlcm.eval import metrics
    from tlcm.scoring.clip import OPENAI_MEAN, OPENAI_STD

    monkeypatch.setattr(metrics, "load_open_clip", lambda arch, file, field, device: (None, None, 16))
    scorer = metrics.OpenClip("ViT-H-14", Path("hps.pt"), "hps", "cpu", hps=True)
    pixels = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    bicubic = T.InterpolationMode.BICUBIC
    hps = T.Compose(
        [T.ToTensor(), T.Resize(16, bicubic), T.CenterCrop(16), T.Normalize(OPENAI_MEAN, OPENAI_STD)]
    )
    image = Image.fromarray(pixels)
    torch.testing.assert_close(scorer.transform(image), hps(image))


# ------------------------------------------------------------------------------------ toy FD


def test_the_toy_fd_uses_the_reference_covariance():
    """Toy FD = ||mu - mu_ref||^2 + tr(S + S_ref - 2 (S^1/2 S_ref S^1/2)^1/2). With the reference
    statistics set to mu_ref = mu + 0.5 (64-d) and S_ref = 4 S (S: the images' own feature
    covariance, hand-computed): 64 / 4 + tr(S + 4 S - 2 (2 S)) = 16 + tr S."""
    from tlcm.toy.metrics import ToyMetrics

    metrics = ToyMetrics()
    images = torch.rand(40, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    feats = metrics.classifier.features(images).detach().double()
    mu = feats.mean(0)
    centred = feats - mu
    sigma = centred.T @ centred / (len(feats) - 1)
    metrics.mu, metrics.sigma = mu + 0.5, 4 * sigma
    expected = 0.25 * feats.shape[1] + float(sigma.trace())
    assert float(sigma.trace()) > 1e-4  # the covariance term is visible
    assert metrics(images, torch.zeros(40, dtype=torch.long)).fd == pytest.approx(expected, rel=1e-5)


def _toy_images(sampler, samples_per_digit: int = 2) -> torch.Tensor:
    from tlcm.toy.scores import evaluate_toy

    seen = []
    evaluate_toy(_ToyBase(), sampler, samples_per_digit, batch_size=7, metrics=lambda x, y: seen.append(x))
    return seen[0]


def test_the_toy_evaluation_noise_is_seeded_whatever_the_global_seed():
    """Every sampler sees the same initial noise (a paired comparison): randn (20, 1, 2, 2) of a
    generator seeded EVAL_SEED = 1234, whatever the global RNG state."""
    torch.manual_seed(1)
    first = _toy_images(lambda cond, uncond, noise, gen: noise)
    torch.manual_seed(2)
    second = _toy_images(lambda cond, uncond, noise, gen: noise)
    expected = torch.randn((20, 1, 2, 2), generator=torch.Generator().manual_seed(1234))
    torch.testing.assert_close(first, expected, rtol=0, atol=0)
    torch.testing.assert_close(second, expected, rtol=0, atol=0)


def test_the_toy_evaluation_step_noise_is_seeded_too():
    """A stochastic sampler (gamma > 0) draws its fresh noise from the evaluation's step generator
    (seeded EVAL_SEED + 1 = 1235): the same images under any global seed, batch after batch."""

    def sampler(cond, uncond, noise, gen):
        return torch.randn(noise.shape, generator=gen)

    torch.manual_seed(1)
    first = _toy_images(sampler)
    torch.manual_seed(2)
    second = _toy_images(sampler)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    g = torch.Generator().manual_seed(1235)
    expected = torch.cat([torch.randn((n, 1, 2, 2), generator=g) for n in (7, 7, 6)])  # batches of 7
    torch.testing.assert_close(first, expected, rtol=0, atol=0)


# --------------------------------------------------------------------------- trajectory cache


def test_a_cache_whose_grid_differs_from_the_runs_is_refused(base, cache16, tmp_path):  # noqa: F811
    """M = 2, k = 250 give the grid [999, 749, 500, 250, 0]; a manifest listing another grid of the
    same length (749 -> 748: states stored at other timesteps than the ones MLCD would be told) is
    refused, not served with the wrong t_m."""
    folder = tmp_path / "copy"
    shutil.copytree(cache16, folder)
    message = _refusal(folder, base, grid=[999, 748, 500, 250, 0])
    assert "grid differs" in message and "[999, 749, 500, 250, 0]" in message


def test_a_shard_stored_in_another_dtype_than_the_manifest_says_is_refused(base, cache16, tmp_path):  # noqa: F811
    """The manifest says float32 but the shard holds float16: refused (states shape, dtype, ...)."""
    folder = tmp_path / "copy"
    shutil.copytree(cache16, folder)
    message = _refusal(folder, base, dtype="float32")
    assert "(states shape, dtype, prompt_index shape, dtype) differ" in message and "F16" in message


# --------------------------------------------------------------------------- embedding store


def test_a_retrained_text_encoder_of_the_same_size_is_refused(tiny_sd_dir, tmp_path):
    """The embedding cache's fingerprint hashes the text encoder's files, not just their sizes: a
    retrained encoder (other weights, same shapes, same file size) does not get the old embeddings."""
    from tlcm.data.embeddings import EmbeddingStore
    from tlcm.models.base import BaseModel

    model = tmp_path / "model"
    shutil.copytree(tiny_sd_dir, model)
    sd = BaseModel.load(model)
    EmbeddingStore(sd, ["a red cube"], tmp_path / "emb")
    weights = next((model / "text_encoder").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(TLCMError, match="made with another text encoder or tokenizer"):
        EmbeddingStore(sd, ["a red cube"], tmp_path / "emb")


def test_a_chunk_written_by_another_process_meanwhile_stays_in_the_manifest(tiny_sd_dir, tmp_path):
    """Two writers on one folder (two runs sharing a cache): B encodes chunk 2 while A writes chunk
    1; B's manifest keeps A's chunk, so a third store finds every chunk (no encode)."""
    from tlcm.data.embeddings import EmbeddingStore
    from tlcm.models.base import BaseModel

    sd, folder = BaseModel.load(tiny_sd_dir), tmp_path / "emb"
    prompts = [f"prompt {i}" for i in range(6)]  # chunks of 2: 0-1, 2-3, 4-5
    a = EmbeddingStore(sd, prompts, folder, chunk_size=2)
    b = EmbeddingStore(sd, prompts, folder, chunk_size=2)

    def encode_while_a_writes(k):
        a.get(torch.tensor([2]))  # A writes chunk 1 while B encodes chunk 2
        return EmbeddingStore._encode(b, k)

    b._encode = encode_while_a_writes
    b.get(torch.tensor([4]))
    third = EmbeddingStore(sd, prompts, folder, chunk_size=2)
    third.get(torch.arange(6))
    assert third.encode_calls == 0


def test_the_statistics_cache_key_sees_an_image_rewritten_in_place_and_other_inception_weights(tmp_path):
    """An image re-generated at the same path and the same size (another seed, same PNG length) is
    another key (its modification time), so are other Inception weights under the same file name
    (their size); the same files and weights keep their key."""
    import os

    from tlcm.eval.fid import stats_key

    files = write_pngs(tmp_path / "ref", 2, size=8)
    weights = tmp_path / "pt_inception-2015-12-05.pth"
    weights.write_bytes(b"a" * 10)
    key = stats_key(files, weights)
    assert stats_key(list(files), weights) == key
    data = files[0].read_bytes()
    files[0].write_bytes(data)  # the same bytes rewritten: a new modification time
    stat = files[0].stat()
    os.utime(files[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert files[0].stat().st_size == len(data) and stats_key(files, weights) != key
    key = stats_key(files, weights)
    weights.write_bytes(b"a" * 11)
    assert stats_key(files, weights) != key
