"""Offline evaluation (tlcm/eval): prompt-set parsers, FID maths against hand-derived values, every
metric's plumbing on tiny random weights (tests/eval_helpers.py), the results table layout. Nothing
is downloaded. Generation and the score command: tests/test_eval_generate.py."""

import json
from pathlib import Path

import pytest
import torch
from eval_helpers import original_layout, random_inception, tiny_bert_vocab, tiny_open_clip, write_pngs
from PIL import Image

from tlcm.errors import TLCMError
from tlcm.eval.fid import FeatureStats, fid_from_stats, frechet_distance, inception_batch, load_inception
from tlcm.eval.metrics import SCORERS
from tlcm.eval.prompts import load_prompt_set
from tlcm.eval.table import results_markdown
from tlcm.eval.weights import MetricWeights, need_packages

PROMPTS = ["a red cube", "a blue ball", "a cat", "a dog"]


def test_coco_captions_one_seeded_caption_per_seeded_image(tmp_path):
    images = [{"id": i, "file_name": f"{i:012d}.jpg"} for i in range(1, 8)]
    anns = [
        {"id": 10 * i + k, "image_id": i, "caption": f" photo {i}  caption {k}\n"}
        for i in range(1, 7)
        for k in range(3)
    ]
    path = tmp_path / "captions_val2017.json"
    path.write_text(json.dumps({"images": images, "annotations": anns}))
    records = load_prompt_set(path, 4, seed=0)
    ids = [int(r.image.split(".")[0]) for r in records]
    assert len(records) == 4 and ids == sorted(set(ids)) and 7 not in ids  # image 7 has no caption
    assert all(r.prompt.startswith(f"photo {i} caption ") for r, i in zip(records, ids, strict=True))
    assert load_prompt_set(path, 4, seed=0) == records
    assert len({tuple(r.image for r in load_prompt_set(path, 4, seed=s)) for s in range(5)}) > 1
    with pytest.raises(TLCMError, match="captions for 6 images, fewer than the 5000"):
        load_prompt_set(path)  # the default N = 5000


def test_parti_hps_txt_jsonl_parsers_and_seeded_subsets(tmp_path):
    parti = tmp_path / "PartiPrompts.tsv"
    parti.write_text("Prompt\tCategory\tChallenge\tNote\nA cat\tAnimals\tBasic\t\nA  red cube\tArt\tx\ty\n")
    assert [r.prompt for r in load_prompt_set(parti)] == ["A cat", "A red cube"]
    hps = tmp_path / "hps"
    hps.mkdir()
    (hps / "photo.json").write_text(json.dumps(["p1", "p2"]))
    (hps / "anime.json").write_text(json.dumps(["a1"]))
    assert [r.prompt for r in load_prompt_set(hps)] == ["a1", "p1", "p2"]  # files in name order
    assert [r.prompt for r in load_prompt_set(hps / "photo.json")] == ["p1", "p2"]
    (tmp_path / "p.txt").write_text("one\ntwo\n\nthree\n")
    (tmp_path / "p.jsonl").write_text('{"prompt": "one"}\n{"prompt": "two"}\n')
    assert [r.prompt for r in load_prompt_set(tmp_path / "p.jsonl")] == ["one", "two"]
    subset = [r.prompt for r in load_prompt_set(tmp_path / "p.txt", 2, seed=3)]
    assert len(subset) == 2 and subset == sorted(subset, key=["one", "two", "three"].index)
    bad = {"bad.json": '{"x": 1}', "bad.tsv": "text\tcol\nA\tB\n", "bad.csv": "a"}
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(TLCMError):
            load_prompt_set(tmp_path / name)


def test_fid_of_identical_sets_is_zero_and_stats_stream():
    x = torch.randn(500, 6, generator=torch.Generator().manual_seed(0)) * torch.arange(1.0, 7.0)
    a, b = FeatureStats(), FeatureStats()
    for chunk in x.split(64):
        a.update(chunk)
    b.update(x)
    mu, cov = a.mean_cov()
    torch.testing.assert_close(mu, x.double().mean(0))
    torch.testing.assert_close(cov, torch.cov(x.double().T))
    assert abs(fid_from_stats(a, b)) < 1e-8


def test_fid_of_two_gaussians_is_the_closed_form():
    """Diagonal covariances commute, so Tr(S1 + S2 - 2 (S1 S2)^1/2) = sum (sqrt s1 - sqrt s2)^2:
    m1 = 0, m2 = (1, 2, 0): ||m1 - m2||^2 = 5; s1 = (1, 4, 9), s2 = (4, 4, 1): 1 + 0 + 4 = 5; d^2 = 10."""
    m1, m2 = torch.zeros(3), torch.tensor([1.0, 2.0, 0.0])
    s1, s2 = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 4.0, 1.0])
    assert frechet_distance(m1, s1.diag(), m2, s2.diag()) == pytest.approx(10.0, abs=1e-9)
    g = torch.Generator().manual_seed(0)
    a, b = FeatureStats(), FeatureStats()
    a.update(m1 + s1.sqrt() * torch.randn(40000, 3, generator=g))
    b.update(m2 + s2.sqrt() * torch.randn(40000, 3, generator=g))
    assert fid_from_stats(a, b) == pytest.approx(10.0, abs=0.15)
    # full covariances: Tr (S1 S2)^1/2 = Tr (S1^1/2 S2 S1^1/2)^1/2, computed here with eigh
    A, B = torch.randn(2, 5, 5, generator=g, dtype=torch.float64)
    S1, S2 = A @ A.T, B @ B.T
    w, v = torch.linalg.eigh(S1)
    root = v @ w.clamp(min=0).sqrt().diag() @ v.T
    tr = torch.linalg.eigvalsh(root @ S2 @ root).clamp(min=0).sqrt().sum()
    expected = float(S1.trace() + S2.trace() - 2 * tr)
    assert frechet_distance(torch.zeros(5), S1, torch.zeros(5), S2) == pytest.approx(expected, rel=1e-8)


def test_fid_agrees_with_torchmetrics():
    fid_module = pytest.importorskip("torchmetrics.image.fid")

    class Identity(torch.nn.Module):
        num_features = 4

        def forward(self, x):
            return x

    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(300, 4, generator=g), torch.randn(300, 4, generator=g) * 1.5 + 0.3
    metric = fid_module.FrechetInceptionDistance(feature=Identity())
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    a, b = FeatureStats(), FeatureStats()
    a.update(real)
    b.update(fake)
    assert fid_from_stats(a, b) == pytest.approx(float(metric.compute()), rel=1e-6)


def test_inception_loads_offline_from_a_local_file(tmp_path, monkeypatch):
    pytest.importorskip("torch_fidelity")
    pytest.importorskip("torchmetrics")
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    weights = random_inception(tmp_path / "inception.pth", monkeypatch)
    monkeypatch.setattr(fe, "load_state_dict_from_url", lambda *a, **k: pytest.fail("tried to download"))
    net = load_inception(weights, "cpu")
    batch = inception_batch([Image.new("RGB", (40, 30), "red"), Image.new("RGB", (32, 32), "blue")])
    assert batch.shape == (2, 3, 299, 299) and batch.dtype == torch.uint8
    with torch.no_grad():
        features = net(batch)
    assert features.shape == (2, 2048) and torch.isfinite(features).all()
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(TLCMError, match="not torch-fidelity's Inception weights"):
        load_inception(tmp_path / "bad.pth", "cpu")


def test_missing_weights_name_the_file_and_where_to_get_it(tmp_path):
    weights = MetricWeights(**{f: tmp_path / f for f in ("inception", "clip", "pickscore", "hps")})
    weights.image_reward, weights.aesthetic_clip = tmp_path / "ir", tmp_path / "ac"
    for name in ["inception", *SCORERS]:
        with pytest.raises(TLCMError) as err:
            load_inception(weights.inception, "cpu") if name == "inception" else SCORERS[name](weights, "cpu")
        message = str(err.value)
        assert "\n" not in message and str(tmp_path) in message and "https://" in message, message
    with pytest.raises(TLCMError, match=r"needs no_such_module_xyz: pip install -e '\.\[eval\]'"):
        need_packages("test", "no_such_module_xyz")


def test_clip_score_pickscore_and_aesthetic_on_a_tiny_clip_folder(tiny_clip_dir, tmp_path):
    from safetensors.torch import save_file
    from transformers import CLIPModel, CLIPTokenizer

    from tlcm.eval.metrics import clip_transform
    from tlcm.rewards.clip import AestheticHead

    images = [Image.open(p) for p in write_pngs(tmp_path / "img", 3)]
    prompts = PROMPTS[:3]
    torch.manual_seed(0)
    save_file(AestheticHead(16).state_dict(), tmp_path / "head.safetensors")
    weights = MetricWeights(clip=tiny_clip_dir, pickscore=tiny_clip_dir, aesthetic_clip=tiny_clip_dir)
    weights.aesthetic_head = tmp_path / "head.safetensors"
    with torch.no_grad():
        names = ("clip", "pickscore", "aesthetic")
        clip, pick, aesthetic = (SCORERS[m](weights, "cpu")(images, prompts) for m in names)
        model, tok = CLIPModel.from_pretrained(tiny_clip_dir), CLIPTokenizer.from_pretrained(tiny_clip_dir)
        pixel_values = torch.stack([clip_transform(32)(im) for im in images])
        out = model(**tok(prompts, padding=True, return_tensors="pt"), pixel_values=pixel_values)
    expected = out.logits_per_image.diag()  # exp(logit_scale) * cos, transformers' own
    torch.testing.assert_close(pick, expected)
    torch.testing.assert_close(clip, (100 * expected / model.logit_scale.exp()).clamp(min=0))
    assert aesthetic.shape == (3,) and torch.isfinite(aesthetic).all() and aesthetic.std() > 0


def test_open_clip_score_and_hps_on_a_tiny_architecture(tmp_path):
    pytest.importorskip("open_clip")
    import open_clip
    from eval_helpers import TINY_OPEN_CLIP
    from torchvision import transforms as T

    file = tiny_open_clip(tmp_path)
    images, prompts = [Image.open(p) for p in write_pngs(tmp_path / "img", 3, size=40)], PROMPTS[:3]
    weights = MetricWeights(clip=file, clip_arch=TINY_OPEN_CLIP, hps=file, hps_arch=TINY_OPEN_CLIP)
    with torch.no_grad():
        clip, hps = (SCORERS[m](weights, "cpu")(images, prompts) for m in ("clip", "hps"))
        model = open_clip.create_model(TINY_OPEN_CLIP, pretrained=str(file)).eval()
        normalize = T.Normalize(open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)
        bicubic = T.Resize(32, T.InterpolationMode.BICUBIC)
        hps_pre = T.Compose([T.ToTensor(), bicubic, T.CenterCrop(32), normalize])
        tokens = open_clip.get_tokenizer(TINY_OPEN_CLIP)(prompts)
        out = model(torch.stack([hps_pre(im) for im in images]), tokens)
    torch.testing.assert_close(hps, (out[0] * out[1]).sum(-1))  # HPSv2: image_features @ text_features.T
    assert clip.shape == (3,) and ((clip >= 0) & (clip <= 100)).all()
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    weights.hps = tmp_path / "bad.pt"
    with pytest.raises(TLCMError, match="does not load as open_clip"):
        SCORERS["hps"](weights, "cpu")


def test_image_reward_loads_the_released_checkpoint_layout(tmp_path):
    from tlcm.eval.imagereward import BlipSizes, ImageRewardModel, ImageRewardScorer, convert_state_dict

    key = "blip.visual_encoder.blocks.3.attn.proj.weight"
    ours = "vision.encoder.layers.3.self_attn.projection.weight"
    assert list(convert_state_dict({key: torch.zeros(1), "blip.text_proj.weight": torch.zeros(1)})) == [ours]
    sizes = BlipSizes(32, 1, 4, 32, 16, 32, 1, 4, 100)
    torch.manual_seed(0)
    model = ImageRewardModel(sizes)
    with torch.no_grad():
        for p in model.head.parameters():
            p.normal_(0, 0.5)
    tiny_bert_vocab(tmp_path)
    with pytest.raises(TLCMError, match="ImageReward.pt is missing.*THUDM/ImageReward"):
        ImageRewardScorer(tmp_path, "cpu", sizes)
    torch.save(original_layout(model.state_dict()), tmp_path / "ImageReward.pt")
    scorer = ImageRewardScorer(tmp_path, "cpu", sizes)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(scorer.model.state_dict()[name], value, msg=name)
    images = [Image.open(p) for p in write_pngs(tmp_path / "img", 2)]
    with torch.no_grad():
        rewards = scorer(images + images[:1], ["a red cube", "a cat", "a blue ball"])
    assert rewards.shape == (3,) and torch.isfinite(rewards).all() and rewards[0] != rewards[2]


def test_results_table_in_the_papers_layout():
    keys = ("model", "steps", "fid", "clip", "aesthetic", "imagereward")
    values = [("TLCM", 4, 30.331, 33.518, 6.06, 1.0123), ("SDXL teacher", 25, 23.29, 33.97, 5.87, 0.82)]
    rows = [dict(zip(keys, v, strict=True)) for v in [*values, ("TLCM", 2, 27.5, 33.18, 5.9, None)]]
    assert results_markdown(rows, ["imagereward", "fid", "clip", "aesthetic"]) == (
        "| model | steps | FID | CLIP score | aesthetic | ImageReward |\n|---|---|---|---|---|---|\n"
        "| TLCM | 2 | 27.50 | 33.18 | 5.90 | - |\n| TLCM | 4 | 30.33 | 33.52 | 6.06 | 1.012 |\n"
        "| SDXL teacher | 25 | 23.29 | 33.97 | 5.87 | 0.820 |\n"
    )


def three_stripes(wide: bool, side: int = 20) -> Image.Image:
    """A 3:1 image (wide: 3 side x side; else side x 3 side) of three uniform squares: red (first),
    green (middle), blue (last)."""
    image = Image.new("RGB", (3 * side, side) if wide else (side, 3 * side))
    for i, colour in enumerate(["red", "green", "blue"]):
        box = (i * side, 0, (i + 1) * side, side) if wide else (0, i * side, side, (i + 1) * side)
        image.paste(colour, box)
    return image


def test_fid_preprocessing_centre_crops_non_square_images() -> None:
    """FID's square crop of a non-square image is its centre (clean-fid / the module docstring): of a
    3:1 strip of red | green | blue squares, the centre square is the uniform green one, and a bicubic
    resize of a uniform square to 299 px is that colour everywhere ((0, 128, 0): PIL's "green"). A
    top-left crop would give red. Both orientations (wide and tall)."""
    batch = inception_batch([three_stripes(wide=True), three_stripes(wide=False)])
    green = torch.tensor([0, 128, 0], dtype=torch.uint8).view(1, 3, 1, 1)
    assert batch.shape == (2, 3, 299, 299)
    assert torch.equal(batch, green.expand(2, 3, 299, 299))


def test_clip_transform_resizes_the_short_side_then_centre_crops() -> None:
    """CLIP's reference preprocessing (and torchvision's Resize(int) + CenterCrop) of a 48 x 24 image
    to 16 px, restated with PIL and numpy: bicubic resize of the short side 24 -> 16 (so 48 -> 32),
    crop columns 8..24 (the centre 16 of 32), /255, then (x - mean) / std with OpenAI CLIP's
    mean / std. Squashing 48 x 24 straight to 16 x 16 gives other pixels. A tall 24 x 48 image too."""
    import numpy as np

    from tlcm.scoring.clip import OPENAI_MEAN, OPENAI_STD, clip_transform

    rng = np.random.default_rng(0)
    mean, std = np.array(OPENAI_MEAN).reshape(3, 1, 1), np.array(OPENAI_STD).reshape(3, 1, 1)
    for wide in (True, False):
        shape = (24, 48, 3) if wide else (48, 24, 3)  # (H, W, 3)
        image = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
        resized = image.resize((32, 16) if wide else (16, 32), Image.Resampling.BICUBIC)
        crop = resized.crop((8, 0, 24, 16) if wide else (0, 8, 16, 24))
        pixels = np.asarray(crop, dtype=np.float64).transpose(2, 0, 1) / 255
        expected = torch.from_numpy((pixels - mean) / std).float()
        torch.testing.assert_close(clip_transform(16)(image), expected, atol=1e-5, rtol=0)


class FixedOpenClip(torch.nn.Module):
    """An open_clip model stand-in: every image embeds to e1 = (1, 0); prompt k (its token id) to the
    unit vector ``TEXTS[k]``, so cos(image, prompt k) = TEXTS[k][0]. Unit vectors only when asked
    (``normalize=True``), as open_clip's ``encode_image`` / ``encode_text``."""

    TEXTS = torch.tensor([[1.0, 0.0], [0.6, 0.8], [-1.0, 0.0], [-0.6, 0.8]])
    NORMS = torch.tensor([3.0, 0.5, 2.0, 4.0])
    """Embedding norms without ``normalize=True`` (open_clip's raw projections are not unit)."""

    def encode_image(self, pixels: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return torch.tensor([1.0 if normalize else 5.0, 0.0]).expand(pixels.shape[0], 2)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return self.TEXTS[tokens] * (1.0 if normalize else self.NORMS[tokens, None])


def test_open_clip_score_is_100_times_the_cosine_clamped_at_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The open_clip CLIP score (Hessel et al. 2021, weight 100 as torchmetrics) is 100 max(cos, 0):
    with cosines 1, 0.6, -1, -0.6 (``FixedOpenClip``, loaded in place of open_clip, which need not be
    installed) the scores are 100, 60, 0, 0: a negative cosine counts as 0, not as a negative score;
    a cosine of unit embeddings (the stand-in's raw ones have norms 5 and 3, 0.5, 2, 4). HPSv2.1 of
    the same model is the raw cosine: 1, 0.6, -1, -0.6."""
    import tlcm.eval.metrics as metrics

    prompts = ["p0", "p1", "p2", "p3"]

    def tokenizer(texts: list[str]) -> torch.Tensor:
        return torch.tensor([prompts.index(t) for t in texts])

    monkeypatch.setattr(metrics, "load_open_clip", lambda *a: (FixedOpenClip(), tokenizer, 16))
    weights = MetricWeights(clip=tmp_path / "open_clip.pt", clip_arch="ViT-g-14")
    images = [Image.new("RGB", (24, 16), "gray")] * 4
    scores = SCORERS["clip"](weights, "cpu")(images, prompts)
    torch.testing.assert_close(scores, torch.tensor([100.0, 60.0, 0.0, 0.0]))
    weights.hps, weights.hps_arch = tmp_path / "hps.pt", "ViT-H-14"
    hps = SCORERS["hps"](weights, "cpu")(images, prompts)  # HPSv2.1: the raw cosine
    torch.testing.assert_close(hps, FixedOpenClip.TEXTS[:, 0])


class FixedTextHidden(torch.nn.Module):
    """BLIP's text encoder stand-in: last_hidden_state (B, 3, 2) = tokens [CLS] (2, 1), (0, 0), (1, -1)
    for every input (it must still be given the image tokens to cross-attend to)."""

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
    ) -> object:
        assert encoder_hidden_states.shape[:2] == encoder_attention_mask.shape
        hidden = torch.tensor([[2.0, 1.0], [0.0, 0.0], [1.0, -1.0]]).expand(input_ids.shape[0], 3, 2)
        return type("Out", (), {"last_hidden_state": hidden})


class SumHead(torch.nn.Module):
    """The MLP head stand-in: r = the sum of the token's features, (B, 2) -> (B,)."""

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return emb.sum(-1)


def test_image_reward_is_the_head_of_the_cls_token_standardised() -> None:
    """ImageReward's published score (ImageReward.py: ``txt_features = text_output.last_hidden_state[:,
    0, :]``, ``rewards = self.mlp(txt_features)``, ``(rewards - self.mean) / self.std`` with mean
    0.16717362830052426, std 1.0333394966054072): with the [CLS] token (2, 1) and a head that sums,
    r = 3 and the score is (3 - 0.16717...) / 1.03334... = 2.7414...; the mean token (1, 0) would give
    r = 1, and multiplying by the std 2.9272...."""
    from tlcm.eval.imagereward import BlipSizes, ImageRewardModel

    torch.manual_seed(0)
    model = ImageRewardModel(BlipSizes(32, 1, 4, 32, 16, 32, 1, 4, 100)).eval()
    model.text, model.head = FixedTextHidden(), SumHead()
    pixels, ids = torch.randn(2, 3, 32, 32), torch.tensor([[2, 5, 3], [2, 7, 3]])
    with torch.no_grad():
        rewards = model(pixels, ids, torch.ones_like(ids))
    expected = (3.0 - 0.16717362830052426) / 1.0333394966054072
    torch.testing.assert_close(rewards, torch.full((2,), expected))


def test_results_table_groups_models_and_shows_a_zero_score():
    """Rows grouped by model in order of first appearance (A, then B), steps ascending within each;
    an ImageReward of exactly 0 is a score (0.000), only None is missing (-)."""
    rows = [
        {"model": "A", "steps": 4, "imagereward": 0.0},
        {"model": "B", "steps": 1, "imagereward": 0.5},
        {"model": "A", "steps": 1, "imagereward": None},
    ]
    assert results_markdown(rows, ["imagereward"]) == (
        "| model | steps | ImageReward |\n|---|---|---|\n"
        "| A | 1 | - |\n| A | 4 | 0.000 |\n| B | 1 | 0.500 |\n"
    )


def test_clip_folder_with_either_tokenizer_file_and_flag_spelling(tmp_path):
    """A transformers CLIP folder needs config.json and one tokenizer file (tokenizer.json or
    vocab.json, not both); a missing file's message names the CLI flag with hyphens."""
    from tlcm.eval.weights import need_clip_folder, need_file

    for name in ("tokenizer.json", "vocab.json"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        (folder / name).write_text("{}")
        assert need_clip_folder(folder, "aesthetic_clip") == folder
    with pytest.raises(TLCMError, match=r"\(or pass --weights\.image-reward PATH\)"):
        need_file(tmp_path / "ImageReward.pt", "image_reward")


def test_fid_images_reach_inception_as_channels_rows_columns() -> None:
    """inception_batch gives (B, 3, H, W) with [c, y, x] the pixel at row y, column x: a 299 px image
    (no resize) whose red is its column and green its row (x // 2, y // 2) comes back unchanged; a
    transposed tensor ([c, x, y]) would swap the two ramps."""
    import numpy as np

    ramp = np.arange(299, dtype=np.uint8) // 2  # the values 0..149, 299 // 2 = 149
    pixels = np.zeros((299, 299, 3), dtype=np.uint8)
    pixels[..., 0], pixels[..., 1] = ramp[None, :], ramp[:, None]  # red = column, green = row
    (batch,) = inception_batch([Image.fromarray(pixels)])
    torch.testing.assert_close(batch[0], torch.from_numpy(ramp).expand(299, 299))
    torch.testing.assert_close(batch[1], torch.from_numpy(ramp)[:, None].expand(299, 299))
    assert batch[2].eq(0).all()


class MeanColour(torch.nn.Module):
    """A stand-in for the FID Inception: uint8 (B, 3, H, W) -> mean colour (B, 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))  # image_stats reads the device from it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().mean((2, 3))


def test_fid_stats_cache_is_not_reused_for_rewritten_images(tmp_path: Path) -> None:
    """Inception statistics of a folder are cached (OUT/fid_stats) and reused while its files are
    unchanged; a folder regenerated under the same file names (other images, other file sizes) must
    be measured anew, not served its stale statistics."""
    from tlcm.eval.fid import image_stats

    files = [tmp_path / "ref" / f"{k}.png" for k in range(3)]
    files[0].parent.mkdir()
    for k, file in enumerate(files):
        Image.new("RGB", (8, 8), (40 * k, 0, 0)).save(file)
    cache, net = tmp_path / "cache", MeanColour()
    first = image_stats(net, files, 2, cache)
    torch.testing.assert_close(image_stats(net, files, 2, cache).sum, first.sum)  # served from the cache
    noise = torch.randint(0, 256, (8, 8, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    Image.fromarray(noise.numpy()).save(files[0])  # regenerated: another image, another size
    again = image_stats(net, files, 2, cache)
    fresh = image_stats(net, files, 2, None)
    torch.testing.assert_close(again.sum, fresh.sum)
    assert not torch.allclose(again.sum, first.sum)


class TokenRecorder(torch.nn.Module):
    """BLIP's text encoder stand-in: records what it is given, returns zeros (B, L, width)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width, self.seen = width, {}

    def forward(self, input_ids, attention_mask, encoder_hidden_states, encoder_attention_mask):
        self.seen = {"ids": input_ids, "mask": attention_mask}
        return type("Out", (), {"last_hidden_state": torch.zeros(*input_ids.shape, self.width)})


def test_image_reward_encodes_the_prompt_tokens_with_their_padding_mask(tmp_path: Path) -> None:
    """ImageReward's text encoder reads each prompt's token ids ([CLS] first, 35 positions, padded)
    and a mask of 1 on its tokens and 0 on the padding: two prompts of equal length but other words
    get other ids and the same mask."""
    from tlcm.eval.imagereward import MAX_TOKENS, BlipSizes, ImageRewardModel, ImageRewardScorer

    sizes = BlipSizes(32, 1, 4, 32, 16, 32, 1, 4, 100)
    torch.manual_seed(0)
    tiny_bert_vocab(tmp_path)
    torch.save(original_layout(ImageRewardModel(sizes).state_dict()), tmp_path / "ImageReward.pt")
    scorer = ImageRewardScorer(tmp_path, "cpu", sizes)
    scorer.model.text = recorder = TokenRecorder(sizes.text_width)
    images = [Image.open(p) for p in write_pngs(tmp_path / "img", 2)]
    with torch.no_grad():
        scorer(images, ["a red cube", "a cat dog"])
    ids, mask = recorder.seen["ids"], recorder.seen["mask"]
    assert ids.shape == mask.shape == (2, MAX_TOKENS)
    assert (ids[:, 0] == scorer.tokenizer.cls_token_id).all() and not torch.equal(ids[0], ids[1])
    length = int(mask[0].sum())
    assert 3 <= length < MAX_TOKENS and torch.equal(mask[0], mask[1])
    assert mask[:, :length].eq(1).all() and mask[:, length:].eq(0).all()
    assert (ids[:, length:] == scorer.tokenizer.pad_token_id).all()


def test_fid_needs_two_images_per_set() -> None:
    """The unbiased covariance divides by N - 1: a set of one image has none (0 / 0), so its
    statistics are refused with a one-line error instead of a NaN FID in the table; two images are
    enough (features (0, 0, 0, 0) and (2, 2, 2, 2): mean 1, every covariance entry 2)."""
    stats = FeatureStats()
    stats.update(torch.zeros(1, 4))
    with pytest.raises(TLCMError, match="at least 2 images per set, got 1"):
        stats.mean_cov()
    stats.update(torch.full((1, 4), 2.0))
    mu, cov = stats.mean_cov()
    torch.testing.assert_close(mu, torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(cov, torch.full((4, 4), 2.0, dtype=torch.float64))


def test_results_table_places_and_rounds_the_extra_metrics():
    """FID-T, PickScore and HPSv2.1 (when scored) take their places in the paper's column order
    (FID, FID-T, CLIP score, PickScore, HPSv2.1, aesthetic, ImageReward) whatever order they were
    asked in; HPSv2.1, a raw cosine near 0.27-0.32 whose models differ in the third decimal, keeps 4
    decimals, FID-T and PickScore 2."""
    row = {"model": "TLCM", "steps": 4, "fid": 20.0, "fid-t": 3.14159, "pickscore": 21.2345, "hps": 0.287349}
    assert results_markdown([row], ["hps", "pickscore", "fid-t", "fid"]) == (
        "| model | steps | FID | FID-T | PickScore | HPSv2.1 |\n|---|---|---|---|---|---|\n"
        "| TLCM | 4 | 20.00 | 3.14 | 21.23 | 0.2873 |\n"
    )
