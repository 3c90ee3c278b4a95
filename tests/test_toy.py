"""The miniature pipeline: tokenizer, toy metrics (hand-derived), and that the committed folder is a
real diffusers StableDiffusionPipeline that draws the digits it is asked for."""

import math

import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline

from tlcm.toy import MINIATURE_SD, TEACHER_GUIDANCE_SCALE
from tlcm.toy.data import DIGIT_WORDS, all_prompts, eval_prompts, prompt_for
from tlcm.toy.metrics import ToyMetrics, frechet_distance
from tlcm.toy.tokenizer import build_clip_tokenizer


def test_tokenizer_spells_prompt_words_as_single_tokens(tmp_path):
    tok = build_clip_tokenizer(all_prompts(), tmp_path)
    ids = tok("a handwritten digit seven").input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert tok.convert_ids_to_tokens(ids[1:-1]) == ["a</w>", "handwritten</w>", "digit</w>", "seven</w>"]
    # Unknown words fall back to byte tokens, never to the unknown token.
    ids = tok("a purple giraffe!").input_ids
    assert tok.unk_token_id not in ids[1:-1] and len(ids) > 5
    padded = tok([""], padding="max_length", max_length=77).input_ids[0]
    assert len(padded) == 77


def test_committed_tokenizer_matches_the_builder():
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(MINIATURE_SD / "tokenizer")
    assert tok.model_max_length == 77
    for word in DIGIT_WORDS:
        assert len(tok(word).input_ids) == 3, word


def test_eval_prompts_cover_digits_and_templates():
    prompts, labels = eval_prompts(8)
    assert len(prompts) == 80 and torch.equal(torch.bincount(labels), torch.full((10,), 8))
    assert prompts[7] == prompt_for(7, 0) == "a handwritten digit seven"
    assert prompts[10 + 3] == "the number 3, handwritten"


def test_frechet_distance_by_hand():
    """1-D: mu1=0, var1=1, mu2=2, var2=4: (0-2)^2 + 1 + 4 - 2 sqrt(1*4) = 4 + 5 - 4 = 5.
    2-D diagonal: sum over axes of (mu diff)^2 + (sqrt(v1) - sqrt(v2))^2 = (1 + 0) + (0 + 1) = 2."""
    t = torch.tensor
    assert frechet_distance(t([0.0]), t([[1.0]]), t([2.0]), t([[4.0]])) == pytest.approx(5.0)
    fd = frechet_distance(t([1.0, 0.0]), torch.diag(t([1.0, 4.0])), t([0.0, 0.0]), torch.diag(t([1.0, 1.0])))
    assert fd == pytest.approx(2.0)
    cov = t([[2.0, 0.5], [0.5, 1.0]])
    assert frechet_distance(t([3.0, 1.0]), cov, t([3.0, 1.0]), cov) == pytest.approx(0.0, abs=1e-9)


def test_toy_metrics_on_real_and_wrong_labels():
    """The classifier reads the real images (>= 95%; 98.8% on its 297 held-out digits, both inks);
    shifted labels score ~0."""
    pytest.importorskip("sklearn")
    from tlcm.toy.data import load_digit_images

    x, y = load_digit_images()
    metrics = ToyMetrics()
    scores = metrics(x, y)
    assert scores.alignment >= 0.95
    assert scores.fd == pytest.approx(0.0, abs=1e-3)  # the reference statistics are these images
    assert metrics(x, (y + 1) % 10).alignment < 0.05
    blank = metrics(torch.full((200, 3, 32, 32), -1.0), y[:200])
    assert blank.fd > 10 * max(scores.fd, 1e-3)


def test_miniature_folder_is_a_real_stable_diffusion_pipeline():
    """Plain diffusers: from_pretrained + its own DDIMScheduler, 25 steps, CFG at the default w."""
    pipe = StableDiffusionPipeline.from_pretrained(MINIATURE_SD)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
    pipe.set_progress_bar_config(disable=True)
    prompts = [prompt_for(d, k) for k in range(2) for d in range(10)]
    out = pipe(
        prompts,
        num_inference_steps=25,
        guidance_scale=TEACHER_GUIDANCE_SCALE,
        output_type="pt",
        generator=torch.Generator().manual_seed(0),
    )
    images = out.images * 2 - 1
    assert images.shape == (20, 3, 32, 32)
    scores = ToyMetrics()(images, torch.arange(10).repeat(2))
    assert scores.alignment >= 0.8
    assert math.isfinite(scores.fd)


def test_placed_digits_stay_on_the_canvas():
    """`place` shrinks to 55-85% and keeps the digit inside: ink is kept (bilinear sampling loses a
    little), the background stays -1, and the same seed gives the same images."""
    pytest.importorskip("sklearn")
    from tlcm.toy.data import load_digit_images

    x, y = load_digit_images(0, inks=1)
    placed, labels = load_digit_images(2, seed=3, inks=1)
    assert placed.shape == (2 * len(x), 3, 32, 32) and torch.equal(labels[: len(x)], y)
    ink, ink_placed = (x + 1).flatten(1).sum(1), (placed[: len(x)] + 1).flatten(1).sum(1)
    ratio = ink_placed / ink
    assert 0.25 < ratio.min() and ratio.max() < 0.8  # area scales with s^2 in [0.30, 0.72]
    assert placed.min() >= -1 and torch.equal(placed, load_digit_images(2, seed=3, inks=1)[0])


def test_two_inks_are_the_same_digits_inverted_and_jitter_keeps_the_background():
    """inks = 2 appends every digit black on white (same label at i and i + 1797); `augment` fills
    uncovered pixels with the border, so a black-on-white digit keeps a white background."""
    pytest.importorskip("sklearn")
    from tlcm.toy.data import augment, load_digit_images

    x, y = load_digit_images(0, inks=1)
    both, labels = load_digit_images(0, inks=2)
    assert torch.equal(both, torch.cat([x, -x])) and torch.equal(labels, y.repeat(2))
    corners = lambda im: im[..., [0, 0, -1, -1], [0, -1, 0, -1]]  # noqa: E731
    jittered = augment(both[len(x) :][:64], torch.Generator().manual_seed(0), 1.0)
    assert corners(jittered).mean() > 0.9  # zero padding (ink -1) would give black corners
    with pytest.raises(ValueError, match="inks must be 1"):
        load_digit_images(0, inks=3)


def test_real_pairs_label_the_ink_of_every_digit():
    """The 1797 UCI digits come first white on black (indices 0..1796), then the same digits black on
    white (1797..3593): the row's ink says which, and matches the image (background -1 or +1 at a
    corner); each caption names its own digit with template i % 4."""
    pytest.importorskip("sklearn")
    from tlcm.toy.data import real_pairs

    x, texts, rows = real_pairs()
    assert len(rows) == 3594
    for i, ink in ((0, "white"), (1796, "white"), (1797, "black"), (3593, "black")):
        assert rows[i]["ink"] == ink, i
        assert x[i, 0, 0, 0].item() == (-1.0 if ink == "white" else 1.0), i
    assert rows[1797]["digit"] == rows[0]["digit"] and texts[1797] == prompt_for(rows[0]["digit"], 1797 % 4)


def test_feature_statistics_are_the_unbiased_ones_fid_uses():
    """Features (0, 1), (2, 3): mean (1, 2); deviations (-1, -1), (1, 1) sum to 2 in every entry of
    the outer product, over N - 1 = 1: covariance [[2, 2], [2, 2]] (the biased N would give 1s) —
    the same estimator as the FID's streamed FeatureStats, so the toy FD and FID agree."""
    from tlcm.eval.fid import FeatureStats
    from tlcm.toy.metrics import feature_statistics

    mu, sigma = feature_statistics(torch.tensor([[0.0, 1.0], [2.0, 3.0]]))
    torch.testing.assert_close(mu, torch.tensor([1.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(sigma, torch.full((2, 2), 2.0, dtype=torch.float64))
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    stats = FeatureStats()
    stats.update(x)
    for ours, fids in zip(feature_statistics(x), stats.mean_cov(), strict=True):
        torch.testing.assert_close(ours, fids)


def test_toy_metrics_score_images_clamped_to_the_saved_range():
    """The toy scores rate what a saved image can hold: a decoded image beyond [-1, 1] scores as its
    clamp (alignment and FD alike)."""
    g = torch.Generator().manual_seed(0)
    images, labels = 3 * torch.randn(40, 3, 32, 32, generator=g), torch.arange(40) % 10
    metrics = ToyMetrics()
    assert metrics(images, labels) == metrics(images.clamp(-1, 1), labels)


def test_evaluation_generates_every_batch_for_its_own_prompts():
    """evaluate_toy in batches of 7 over 30 prompts (digits 0-9 cycling): a stand-in model whose
    "image" is the digit its prompt names must give the metrics each prompt's own label, in every
    batch (batches after the first hold other digits than the first)."""
    import contextlib

    from tlcm.rewards.digit import prompt_digit
    from tlcm.toy.scores import evaluate_toy

    class Base:
        device, latent_shape = "cpu", (1, 1, 1)

        def encode(self, prompts):
            return torch.tensor([prompt_digit(p) for p in prompts], dtype=torch.float32), None

        def autocast(self):
            return contextlib.nullcontext()

        def decode(self, latents):
            return latents

    def sampler(cond, uncond, noise, gen):
        return cond.view(-1, 1, 1, 1) + 0 * noise

    seen = []
    evaluate_toy(
        Base(), sampler, 3, batch_size=7, metrics=lambda images, labels: seen.append((images, labels))
    )
    ((images, labels),) = seen
    assert images.shape == (30, 1, 1, 1) and torch.equal(images.flatten().long(), labels)


def test_student_score_rows_put_each_score_in_its_column(monkeypatch):
    """student_scores: one evaluation of ``samples_per_digit`` per digit per step count, and one row
    each with its alignment (higher is better) under "alignment", its FD (lower is better) under "fd"
    and the prompt count 10 x samples_per_digit (the FD depends on it), and the gamma and first
    gamma of the student grid that sampled it (the default grid: gamma 1, first as the others)."""
    import tlcm.toy.scores as scores
    from tlcm.toy.metrics import ToyScores

    results, asked = iter([ToyScores(alignment=0.25, fd=7.0), ToyScores(alignment=0.75, fd=3.0)]), []

    def evaluate_toy(base, sampler, samples_per_digit=50, batch_size=250, metrics=None):
        asked.append(samples_per_digit)
        return next(results)

    monkeypatch.setattr(scores, "evaluate_toy", evaluate_toy)
    base = type("Base", (), {"schedule": 1000})()
    rows = scores.student_scores(base, None, (1, 4), samples_per_digit=2, metrics=object())
    assert asked == [2, 2]
    assert rows == [
        {"steps": 1, "prompts": 20, "alignment": 0.25, "fd": 7.0, "gamma": 1.0, "first_gamma": None},
        {"steps": 4, "prompts": 20, "alignment": 0.75, "fd": 3.0, "gamma": 1.0, "first_gamma": None},
    ]


def test_the_miniature_prompt_file_is_its_training_prompts():
    """tlcm/toy/assets/prompts.txt (what a stand-in model passes as --recipes.data.prompts) is the
    miniature's 40 training prompts in order, read by the prompt loader as they are."""
    from tlcm.data.prompts import load_prompts
    from tlcm.toy import MINIATURE_PROMPTS

    assert load_prompts(MINIATURE_PROMPTS) == all_prompts() == load_prompts(None)
