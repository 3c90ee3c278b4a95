"""Offline evaluation (tlcm/eval): prompt-set parsers, FID maths against hand-derived values, every
metric's plumbing on tiny random weights (tests/eval_helpers.py), the results table layout. Nothing
is downloaded. Generation and the score command: tests/test_eval_generate.py."""

import json

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
