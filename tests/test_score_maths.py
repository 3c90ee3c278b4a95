"""The CLIP-family scores' maths shared by the rewards and the metrics (tlcm.scoring.clip,
tlcm.rewards.clip) on the tiny random CLIP folder: the folder's own image normalisation, the text
embedding cache, and the reward's sign (a reward is not clamped like the CLIP score metric)."""

import json
import shutil
from pathlib import Path

import torch
from tiny_pipelines import CLIP_PROMPTS as PROMPTS

from tlcm.rewards import RewardSpec, build_reward
from tlcm.scoring.clip import ClipEmbedder, ClipScore


def test_a_folders_preprocessor_mean_and_std_normalise_its_images(
    tiny_clip_dir: Path, tmp_path: Path
) -> None:
    """A CLIP folder with a preprocessor_config.json (PickScore's, SigLIP-like models) normalises
    with its image_mean and image_std, not OpenAI CLIP's: an image of exactly the folder's mean
    colour (2 mean - 1 in [-1, 1]) normalises to zero pixels, so it embeds as all-zero pixels do."""
    folder = Path(shutil.copytree(tiny_clip_dir, tmp_path / "clip"))
    mean, std = [0.5, 0.25, 0.75], [0.2, 0.4, 0.1]
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": mean, "image_std": std}))
    clip = ClipEmbedder(folder)
    torch.testing.assert_close(clip.mean.flatten(), torch.tensor(mean))
    torch.testing.assert_close(clip.std.flatten(), torch.tensor(std))
    uniform = (torch.tensor(mean).view(1, 3, 1, 1) * 2 - 1).expand(2, 3, 40, 40)  # [-1, 1] of the mean
    with torch.no_grad():
        torch.testing.assert_close(clip.image(uniform), clip.pixels(torch.zeros(2, 3, 32, 32)))


def test_text_embeddings_do_not_depend_on_what_was_cached_before(tiny_clip_dir: Path) -> None:
    """Each distinct prompt is encoded once and cached: a batch mixing cached and new prompts (in any
    order, with repeats) gets each prompt's own embedding, the one a fresh embedder computes."""
    warm, fresh = ClipEmbedder(tiny_clip_dir), ClipEmbedder(tiny_clip_dir)
    warm.text(PROMPTS[:1])
    batch = [PROMPTS[0], PROMPTS[1], PROMPTS[0]]
    torch.testing.assert_close(warm.text(batch), fresh.text(batch))
    torch.testing.assert_close(warm.text(PROMPTS[1:2]), fresh.text(PROMPTS[1:2]))


def test_the_clip_reward_keeps_negative_cosines_and_the_metric_clamps_them(tiny_clip_dir: Path) -> None:
    """The CLIP reward is 100 cos(image, text) in [-100, 100] (its gradient must reach images far
    from their prompt); the CLIP score metric is 100 max(cos, 0) (Hessel et al. 2021). An image
    embedding equal to minus its prompt's (cos = -1): reward -100, metric 0; equal to it: 100 both."""
    reward = build_reward("clip", RewardSpec(clip_folder=str(tiny_clip_dir)))
    metric = ClipScore("clip", tiny_clip_dir)
    prompts = list(PROMPTS[:2])
    text = reward.clip.text(prompts)
    torch.testing.assert_close(
        reward.score(torch.stack([-text[0], text[1]]), prompts), torch.tensor([-100.0, 100.0])
    )
    clamped = metric.score(torch.stack([-text[0], text[1]]), prompts, clamp=True)
    torch.testing.assert_close(clamped, torch.tensor([0.0, 100.0]))


def test_prompts_beyond_clips_77_tokens_are_cut_as_clip_does(tiny_clip_dir: Path) -> None:
    """CLIP reads at most 77 tokens: a longer prompt (PartiPrompts and HPS sets have them) is
    truncated, not an error, so words past the limit change nothing."""
    clip = ClipEmbedder(tiny_clip_dir)
    long = " ".join(["a red cube"] * 40)  # 120 words
    emb = clip.text([long, long + " and a blue ball"])
    assert emb.shape[0] == 2 and torch.isfinite(emb).all()
    torch.testing.assert_close(emb[0], emb[1])


def test_the_aesthetic_head_scores_without_dropout(tiny_clip_dir: Path, tmp_path: Path) -> None:
    """The LAION aesthetic MLP has dropout layers (training only): a loaded head scores in eval mode,
    so the same embeddings get the same score every time."""
    from safetensors.torch import save_file

    from tlcm.scoring.clip import AestheticHead

    torch.manual_seed(0)
    save_file(AestheticHead(16).state_dict(), tmp_path / "head.safetensors")
    score = ClipScore("aesthetic", tiny_clip_dir, head_file=tmp_path / "head.safetensors")
    embeds = torch.nn.functional.normalize(torch.randn(4, 16), dim=-1)
    with torch.no_grad():
        torch.testing.assert_close(score.score(embeds, ["p"] * 4), score.score(embeds, ["p"] * 4))
