"""Latent LPIPS: hand-derived value, distance properties, weight files, use as MLCD/LCD distance,
the training script's core on the tiny SD pipeline, and the shipped miniature weights."""

import json
import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from tlcm.conditioning import Conditioning
from tlcm.data.states import TrajectoryStates
from tlcm.diffusion.denoiser import Guided
from tlcm.diffusion.milestones import StudentGrid
from tlcm.diffusion.schedule import VPSchedule
from tlcm.errors import TLCMError
from tlcm.latent_lpips.train import (
    LOG_EPS,
    PixelProxy,
    TrainArgs,
    log_loss,
    train_latent_lpips,
    triplet_distances,
    write,
)
from tlcm.losses import latent_lpips as ll
from tlcm.losses.distances import get_distance
from tlcm.losses.latent_lpips import LatentLPIPS, load_latent_lpips, save_latent_lpips
from tlcm.losses.lcd import LCD, LCDConfig, lcd_loss
from tlcm.losses.mlcd import MLCD, MLCDConfig, mlcd_loss
from tlcm.toy.classifier import DigitClassifier

TINY = (2, 3, 4, 4, 5)


def _random_net(seed: int = 0, in_channels: int = 4, channels=TINY) -> LatentLPIPS:
    torch.manual_seed(seed)
    net = LatentLPIPS(in_channels, channels)
    for lin in net.lins:
        torch.nn.init.uniform_(lin.weight, 0.1, 1.0)
    return net


def test_hand_derived_value():
    """2 latent channels, every block 2 wide, every 3x3 conv the identity (centre tap 1, bias 0);
    head l has weights (l, l). Inputs are positive, so every ReLU is the identity and taps 1-4 equal
    the input, tap 5 its 2x2 max-pool.
    pred: (3, 4) at all 2x2 pixels -> normalised (0.6, 0.8).
    target: (4, 3) at pixel (0, 0), (3, 4) elsewhere -> (0.8, 0.6) at (0, 0).
    Taps 1-4: only pixel (0, 0) differs, ||(0.6, 0.8) - (0.8, 0.6)||^2 = 0.08, spatial mean 0.02,
    weighted 0.02 l; sum over l = 1..4: 0.2.
    Tap 5: max-pool gives pred (3, 4) -> (0.6, 0.8), target (4, 4) -> (1, 1)/sqrt(2);
    ||a - b||^2 = 2 - 2 a.b = 2 - 1.4 sqrt(2); weighted 5 (2 - 1.4 sqrt(2)).
    Total 0.2 + 10 - 7 sqrt(2) = 10.2 - 7 sqrt(2) ~ 0.300505."""
    net = LatentLPIPS(2, (2, 2, 2, 2, 2))
    with torch.no_grad():
        for module in net.blocks.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.zero_()
                module.bias.zero_()
                module.weight[:, :, 1, 1] = torch.eye(2)
        for level, lin in enumerate(net.lins, start=1):
            lin.weight.fill_(level)
    pred = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1).expand(1, 2, 2, 2)
    target = pred.clone()
    target[0, :, 0, 0] = torch.tensor([4.0, 3.0])
    torch.testing.assert_close(net(pred, target), torch.tensor([10.2 - 7 * math.sqrt(2)]))


def test_zero_on_equal_positive_on_different_and_gradients_reach_pred_only():
    net = _random_net().eval().requires_grad_(False)
    x = torch.randn(3, 4, 8, 8)
    torch.testing.assert_close(net(x, x), torch.zeros(3))
    pred = torch.randn(3, 4, 8, 8, requires_grad=True)
    d = net(pred, x)
    assert d.shape == (3,) and (d > 0).all()
    d.sum().backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in net.parameters())


def test_wrong_channel_count_is_refused():
    with pytest.raises(ValueError, match=r"expects \(B, 4, h, w\)"):
        _random_net()(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))


def test_safetensors_round_trip(tmp_path):
    net, path = _random_net(), tmp_path / "w.safetensors"
    save_latent_lpips(net, path, {"note": "test"})
    loaded = load_latent_lpips(path)
    assert loaded.channels == TINY and loaded.in_channels == 4 and not loaded.training
    x, y = torch.randn(2, 4, 6, 6), torch.randn(2, 4, 6, 6)
    torch.testing.assert_close(loaded(x, y), net(x, y))


def test_pickle_round_trip_uses_weights_only(tmp_path, monkeypatch):
    net, path = _random_net(), tmp_path / "w.pth"
    torch.save(net.state_dict(), path)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    loaded = load_latent_lpips(path)
    assert calls == [True] and loaded.channels == TINY
    x, y = torch.randn(2, 4, 6, 6), torch.randn(2, 4, 6, 6)
    torch.testing.assert_close(loaded(x, y), net(x, y))


class Payload:
    """Stands for arbitrary code in a pickle: weights_only=True must refuse to build it."""


def test_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"blocks.0.0.weight": torch.zeros(1), "payload": Payload()}, path)
    with pytest.raises(TLCMError, match="not a tensor-only pickle") as err:
        load_latent_lpips(path)
    assert str(path) in str(err.value)


def test_corrupt_safetensors_is_refused(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"not safetensors")
    with pytest.raises(TLCMError, match="not a readable safetensors file"):
        load_latent_lpips(path)


def _broken_file(tmp_path, edit) -> str:
    path = tmp_path / "w.safetensors"
    save_latent_lpips(_random_net(), path)
    state = load_file(path)
    edit(state)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    save_file(state, str(path), metadata=meta)
    return str(path)


def test_missing_key_is_refused(tmp_path):
    path = _broken_file(tmp_path, lambda s: s.pop("lins.2.weight"))
    with pytest.raises(TLCMError, match="missing key 'lins.2.weight'") as err:
        load_latent_lpips(path)
    assert path in str(err.value)


def test_unexpected_key_is_refused(tmp_path):
    path = _broken_file(tmp_path, lambda s: s.update({"extra.weight": torch.zeros(2)}))
    with pytest.raises(TLCMError, match="unexpected key 'extra.weight'") as err:
        load_latent_lpips(path)
    assert path in str(err.value)


def test_wrong_shape_is_refused(tmp_path):
    path = _broken_file(tmp_path, lambda s: s.update({"blocks.1.2.weight": torch.zeros(3, 2, 3, 3)}))
    with pytest.raises(
        TLCMError, match=r"'blocks.1.2.weight' has shape \(3, 2, 3, 3\), expected \(3, 3, 3, 3\)"
    ) as err:
        load_latent_lpips(path)
    assert path in str(err.value)


def test_missing_file_tells_how_to_train_one(tmp_path):
    with pytest.raises(TLCMError, match="not found.*python -m tlcm.latent_lpips.train"):
        load_latent_lpips(tmp_path / "none.safetensors")
    with pytest.raises(ValueError, match="not found.*none.safetensors.*latent_lpips.train"):
        MLCDConfig(distance="latent_lpips", distance_weights=str(tmp_path / "none.safetensors")).validate(
            1000, StudentGrid()
        )
    with pytest.raises(ValueError, match="'l2' has no weights"):
        LCDConfig(distance="l2", distance_weights="w.safetensors").validate(1000, StudentGrid())


SCHEDULE = VPSchedule(torch.tensor([0.9216, 0.64, 0.36]), prediction_type="sample")
COND = Conditioning(torch.zeros(2, 2, 3))


def test_selectable_in_mlcd_and_lcd(tmp_path):
    """MLCD and LCD built with distance="latent_lpips" use the file of their distance_weights, and
    the student's parameters receive gradients through it (x0_hat = scale * x, teacher x0_hat = 0)."""
    net, path = _random_net(), tmp_path / "w.safetensors"
    save_latent_lpips(net, path)
    mlcd_cfg = MLCDConfig(distance="latent_lpips", distance_weights=str(path))
    lcd_cfg = LCDConfig(distance="latent_lpips", distance_weights=str(path))
    mlcd_cfg.validate(1000, StudentGrid())
    lcd_cfg.validate(1000, StudentGrid())
    scale = torch.nn.Parameter(torch.tensor(0.5))

    def student(x, t, cond):
        return scale * x

    def teacher(x, t, cond):
        return torch.zeros_like(x)

    x, two, one = torch.randn(2, 4, 4, 4), torch.tensor([2, 2]), torch.tensor([1, 1])
    guided = Guided(teacher, 2.0, COND[:1])
    states = TrajectoryStates(x, two, one, torch.tensor([0, 0]))
    mlcd = mlcd_loss(
        student, student, guided, SCHEDULE, states, COND, MLCD(mlcd_cfg, torch.nn.Linear(1, 1)).distance
    )
    noise = torch.randn(2, 4, 4, 4)
    lcd = lcd_loss(student, student, guided, SCHEDULE, x, noise, two, one, COND, 1, LCD(lcd_cfg).distance)
    assert mlcd.shape == lcd.shape == (2,) and (mlcd > 0).all() and (lcd > 0).all()
    (mlcd.sum() + lcd.sum()).backward()
    assert scale.grad is not None and scale.grad != 0
    a, b = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(get_distance("latent_lpips", str(path))(a, b), net(a, b))  # this file's net
    assert not torch.allclose(get_distance("latent_lpips")(a, b), net(a, b))  # not the default file's


def test_shipped_weights_load():
    assert ll.DEFAULT_WEIGHTS.is_file()
    net = load_latent_lpips(ll.DEFAULT_WEIGHTS)
    assert net.in_channels == 4 and ll.DEFAULT_WEIGHTS.stat().st_size < 2 * 2**20
    x = torch.randn(2, 4, 8, 8)
    d = net(x, x + 0.1 * torch.randn_like(x))
    assert (d > 0).all() and torch.isfinite(d).all()


def test_training_core_two_steps_on_tiny_sd(tiny_sd, tmp_path):
    torch.manual_seed(0)
    images = torch.rand(12, 3, 32, 32) * 2 - 1
    args = TrainArgs(steps=2, batch_size=4, triplets=8, heldout_triplets=4, channels=(2, 2, 4, 4, 4))
    net, record = train_latent_lpips(tiny_sd.vae, PixelProxy(DigitClassifier()), images[:8], images[8:], args)
    out = tmp_path / "tiny.safetensors"
    write(net, record, out)
    loaded = load_latent_lpips(out)
    assert loaded.channels == (2, 2, 4, 4, 4)
    assert all((lin.weight >= 0).all() for lin in loaded.lins)
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["steps"] == 2 and 0 <= saved["heldout_2afc_latent_lpips"] <= 1


def test_negative_head_weights_count_as_zero():
    """w_{l,c} >= 0 (the distance stays >= 0): a head weight below 0 acts as 0."""
    net = _random_net()
    with torch.no_grad():
        net.lins[1].weight[0, :2] = -3.0
        zeroed = _random_net()
        zeroed.load_state_dict(net.state_dict())
        zeroed.lins[1].weight[0, :2] = 0.0
        x, y = torch.randn(2, 4, 6, 6), torch.randn(2, 4, 6, 6)
        torch.testing.assert_close(net(x, y), zeroed(x, y))
        assert (net(x, y) >= 0).all()


def test_registered_distances_by_hand():
    """d = 0.3 everywhere: "l2" 0.09, "huber" (per sample, c = 0.03) sqrt(0.09 + 0.0009) - 0.03,
    "elementwise_huber" (per element, c = 0.001) sqrt(0.09 + 1e-6) - 0.001; 2 x 3 x 4 elements."""
    a, b = torch.full((2, 3, 2, 2), 0.3), torch.zeros(2, 3, 2, 2)
    want = {"l2": 0.09, "huber": math.sqrt(0.0909) - 0.03, "elementwise_huber": math.sqrt(0.090001) - 0.001}
    for name, value in want.items():
        torch.testing.assert_close(get_distance(name)(a, b), torch.full((2,), value), msg=name)
    d = torch.tensor([0.3, -0.4, 0.0, 1.2]).view(1, 1, 2, 2)  # mean d^2 = 0.4225: the forms differ
    torch.testing.assert_close(
        get_distance("huber")(d, torch.zeros_like(d)), torch.tensor([math.sqrt(0.4225 + 0.0009) - 0.03])
    )


def test_training_pairs_and_loss_by_hand(float64):
    """triplet_distances: columns (ref, a), (ref, b), (a, b), the proxy's order (make_triplets);
    latents ref = 0, a = 1, b = 3 under l2: (1, 9, 4). log_loss: mean (log(d + e) - log(p + e))^2
    with e = 1e-3: d = 1 - e vs p = 0.1 - e gives (log 10)^2, d = p gives 0: mean (log 10)^2 / 2."""
    z = torch.stack([torch.zeros(2, 4, 2, 2), torch.ones(2, 4, 2, 2), torch.full((2, 4, 2, 2), 3.0)], 1)
    l2 = lambda x, y: (x - y).square().flatten(1).mean(1)  # noqa: E731
    torch.testing.assert_close(triplet_distances(l2, z), torch.tensor([[1.0, 9.0, 4.0]] * 2))
    assert LOG_EPS == 1e-3
    d, p = torch.tensor([1 - 1e-3, 0.5]), torch.tensor([0.1 - 1e-3, 0.5])
    torch.testing.assert_close(log_loss(d, p), torch.tensor(math.log(10) ** 2 / 2))


class ZeroProxy(torch.nn.Module):
    """A proxy that calls every pair identical: the regression pulls every distance, and so every
    head weight, down."""

    def forward(self, x, y):
        return torch.zeros(x.shape[0])


def test_training_keeps_the_head_weights_nonnegative(tiny_sd):
    """lr 1 towards a zero proxy: Adam's first step moves each head weight with a gradient (0.2 at
    init) down by about 1; each step projects them back to w_{l,c} >= 0, so they end at exactly 0
    (the weights of channels dead at init get no gradient and stay)."""
    torch.manual_seed(0)
    images = torch.rand(8, 3, 32, 32) * 2 - 1
    args = TrainArgs(steps=2, batch_size=4, triplets=4, heldout_triplets=4, channels=(2, 2, 4, 4, 4), lr=1.0)
    net, _ = train_latent_lpips(tiny_sd.vae, ZeroProxy(), images[:4], images[4:], args)
    assert all((lin.weight >= 0).all() for lin in net.lins)
    assert any((lin.weight == 0).any() for lin in net.lins)  # moved below 0, clamped


def test_proxy_ssim_is_one_on_equal_images_and_the_papers_formula():
    """SSIM (Wang et al. 2004, eq. 13, uniform window, dynamic range L = 2) is 1 for equal images
    and, on one 7 x 7 window, (2 mx my + C1)(2 cov + C2) / ((mx^2 + my^2 + C1)(vx + vy + C2)) with
    population statistics, C1 = (0.01 L)^2, C2 = (0.03 L)^2."""
    from tlcm.latent_lpips.data import PixelProxy as DataProxy

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 7, 7, generator=g) * 2 - 1
    y = (0.5 * x + 0.3 * torch.rand(2, 3, 7, 7, generator=g)).clamp(-1, 1)
    torch.testing.assert_close(DataProxy.ssim(x, x), torch.ones(2))
    xs, ys = x.double().flatten(2), y.double().flatten(2)  # (N, 3, 49): one window per channel
    mx, my = xs.mean(-1), ys.mean(-1)
    vx, vy = xs.var(-1, unbiased=False), ys.var(-1, unbiased=False)
    cov = ((xs - mx[..., None]) * (ys - my[..., None])).mean(-1)
    c1, c2 = 0.02**2, 0.06**2
    expected = ((2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean(1)
    torch.testing.assert_close(DataProxy.ssim(x, y).double(), expected, rtol=1e-4, atol=1e-5)


def test_triplets_are_the_proxy_distances_of_their_decoded_pairs(tiny_sd):
    """make_triplets: p holds P(ref, a), P(ref, b), P(a, b) of the three decoded latents of each
    triplet (decode: z / scaling_factor through the VAE), and uint8 images (0..255) give the
    triplets of the same images as floats in [-1, 1]."""
    from tlcm.latent_lpips.data import make_triplets

    vae = tiny_sd.vae.eval().requires_grad_(False)

    def proxy(x, y):
        return (x - y).square().mean(dim=(1, 2, 3))

    images = torch.randint(
        0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    ours = make_triplets(vae, proxy, images, 4, 0.5, torch.Generator().manual_seed(1))
    floats = make_triplets(vae, proxy, images.float() / 127.5 - 1, 4, 0.5, torch.Generator().manual_seed(1))
    torch.testing.assert_close(ours["z"], floats["z"])
    torch.testing.assert_close(ours["p"], floats["p"])
    z = ours["z"]
    assert z.shape[:2] == (4, 3)
    with torch.no_grad():
        ref, a, b = (vae.decode(z[:, i] / vae.config.scaling_factor).sample.clamp(-1, 1) for i in range(3))
    expected = torch.stack([proxy(ref, a), proxy(ref, b), proxy(a, b)], 1)
    torch.testing.assert_close(ours["p"], expected, rtol=1e-4, atol=1e-6)


def test_a_weights_file_retrained_in_place_is_reread(tmp_path):
    """The registered distance caches its network per file; a file rewritten at the same path (the
    trainer's --out run again) must be read anew: after the rewrite the distance is the new net's."""
    import os

    from tlcm.losses.latent_lpips import latent_lpips_distance

    path, a, b = tmp_path / "w.safetensors", torch.randn(2, 4, 4, 4), torch.randn(2, 4, 4, 4)
    old, new = _random_net(0), _random_net(1)
    save_latent_lpips(old, path)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    distance = latent_lpips_distance(path)
    torch.testing.assert_close(distance(a, b), old(a, b))
    save_latent_lpips(new, path)
    os.utime(path, ns=(2_000_000_000, 2_000_000_000))  # a later modification time, whatever the clock
    torch.testing.assert_close(distance(a, b), new(a, b))
    assert not torch.allclose(old(a, b), new(a, b))


def test_a_loaded_network_is_frozen_and_gathers_no_gradients(tmp_path):
    """Latent LPIPS is a fixed distance in MLCD / LCD: the loaded network's parameters require no
    gradient, so backpropagating a distance reaches ``pred`` only and allocates no weight gradients."""
    path = tmp_path / "w.safetensors"
    save_latent_lpips(_random_net(), path)
    net = load_latent_lpips(path)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    pred = torch.randn(2, 4, 4, 4, requires_grad=True)
    net(pred, torch.randn(2, 4, 4, 4)).sum().backward()
    assert pred.grad is not None and all(p.grad is None for p in net.parameters())


def test_two_afc_and_spearman_by_hand():
    """two_afc: the fraction of triplets where d and p agree on which of a, b is closer to ref
    (columns 0 = (ref, a), 1 = (ref, b)); d = (1, 2), (3, 1) vs p = (1, 2), (1, 3): agree, disagree:
    0.5 (column 2, (a, b), plays no part). spearman: the correlation of ranks; d = (0.1, 0.4, 0.2,
    0.3) has ranks (0, 3, 1, 2), p = (0.2, 0.1, 0.4, 0.3) ranks (1, 0, 3, 2): rank differences
    (-1, 3, -2, 0), 1 - 6 * 14 / (4 * 15) = -0.4 (the sort orders (0, 2, 3, 1), (1, 0, 3, 2) would
    correlate +0.4)."""
    from tlcm.latent_lpips.train import spearman, two_afc

    d = torch.tensor([[1.0, 2.0, 9.0], [3.0, 1.0, 9.0]])
    p = torch.tensor([[1.0, 2.0, 0.0], [1.0, 3.0, 5.0]])
    assert two_afc(d, p) == pytest.approx(0.5)
    d, p = torch.tensor([0.1, 0.4, 0.2, 0.3]), torch.tensor([0.2, 0.1, 0.4, 0.3])
    assert spearman(d, p) == pytest.approx(-0.4)


def test_held_out_record_scores_latent_l2_as_the_baseline():
    """measure: with the proxy equal to the latents' own L2 distances, latent L2 agrees with it on
    every triplet (2AFC 1, Spearman 1, the same mean) while a random latent LPIPS does not: the
    baseline columns are L2's, not the network's."""
    from tlcm.latent_lpips.train import measure

    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 3, 4, 4, 4, generator=g) * torch.rand(64, 3, 1, 1, 1, generator=g)
    p = triplet_distances(lambda a, b: (a - b).square().flatten(1).mean(1), z)
    record = measure(_random_net().eval(), z, p)
    assert record["heldout_2afc_latent_l2"] == 1.0 and record["heldout_spearman_latent_l2"] == 1.0
    assert record["heldout_mean_latent_l2"] == pytest.approx(p.mean().item(), abs=1e-5)
    assert record["heldout_2afc_latent_lpips"] < 1.0


def _sign_classifier() -> DigitClassifier:
    """A DigitClassifier whose three convs pass the grey level on in channel 0 only (centre tap 1,
    all else 0): every SiLU tap of a uniform image is +-e0 after unit normalisation, the sign of the
    image's grey level (SiLU keeps the sign)."""
    classifier = DigitClassifier(width=2, feature_dim=4)
    with torch.no_grad():
        for conv in (m for m in classifier.body if isinstance(m, torch.nn.Conv2d)):
            conv.weight.zero_()
            conv.bias.zero_()
            conv.weight[0, 0, 1, 1] = 1.0
    return classifier


def test_proxy_feature_distance_sums_over_channels():
    """P's feature term (LPIPS-style): mean over the 3 SiLU taps of mean_{h,w} sum_c (f^(x) -
    f^(y))_c^2. With ``_sign_classifier`` a white image's taps are the unit vector e0 at every pixel,
    a black image's -e0, so every tap contributes ||e0 + e0||^2 = 4 and P's feature term is 4 (a mean
    over the 2, 4, 4 channels would give (2 + 1 + 1) / 3)."""
    classifier = _sign_classifier()
    white, black = torch.ones(2, 3, 32, 32), -torch.ones(2, 3, 32, 32)
    torch.testing.assert_close(PixelProxy(classifier).feature_distance(white, black), torch.full((2,), 4.0))
    torch.testing.assert_close(PixelProxy(classifier).feature_distance(white, white), torch.zeros(2))


class PixelMSE(torch.nn.Module):
    """A proxy: the mean squared pixel difference of the decoded images, (N,)."""

    def forward(self, x, y):
        return (x - y).square().mean(dim=(1, 2, 3))


def test_training_regresses_each_triplets_own_pairs(tiny_sd):
    """The trainer's loss is log_loss of the network's distances of each triplet's own pairs (ref,
    a), (ref, b), (a, b) against that triplet's proxy distances: replaying its seeded draws (the
    triplets, the held-out ones, the initial network under torch.manual_seed(seed), the batch) gives
    the loss it records after one step (taken before the update; the record rounds to 5 decimals)."""
    from tlcm.latent_lpips.data import make_triplets

    torch.manual_seed(0)
    images = torch.rand(6, 3, 32, 32) * 2 - 1
    args = TrainArgs(steps=1, batch_size=4, triplets=3, heldout_triplets=2, channels=(2, 2, 4, 4, 4))
    _, record = train_latent_lpips(tiny_sd.vae, PixelMSE(), images[:4], images[4:], args)
    vae, g = tiny_sd.vae.eval(), torch.Generator().manual_seed(args.seed)
    train = make_triplets(vae, PixelMSE(), images[:4], 3, args.latent_noise, g)
    make_triplets(vae, PixelMSE(), images[4:], 2, args.latent_noise, g)
    torch.manual_seed(args.seed)
    net = LatentLPIPS(vae.config.latent_channels, args.channels)
    idx = torch.randint(3, (4,), generator=g)
    with torch.no_grad():
        expected = log_loss(triplet_distances(net, train["z"][idx]), train["p"][idx]).item()
    assert record["final_train_log_mse"] == pytest.approx(expected, abs=2e-5)


def test_proxy_of_a_white_and_a_black_image_by_hand():
    """P(x, y) = feature term + (1 - SSIM) / 2. White vs black with ``_sign_classifier``: feature
    term 4 (test_proxy_feature_distance_sums_over_channels). SSIM of constant images 1 and
    -1 (means 1, -1, no variance or covariance): (2 (1)(-1) + C1) C2 / ((1 + 1 + C1) C2) =
    (C1 - 2) / (C1 + 2), C1 = 0.02^2, so (1 - SSIM) / 2 = 2 / (2 + C1) and P = 4 + 2 / 2.0004."""
    classifier = _sign_classifier()
    white, black = torch.ones(2, 3, 32, 32), -torch.ones(2, 3, 32, 32)
    torch.testing.assert_close(PixelProxy(classifier)(white, black), torch.full((2,), 4 + 2 / 2.0004))


def test_distortions_stay_in_the_image_range():
    """distort's contrast, brightness, noise and patches are clamped back to [-1, 1] (what the VAE
    encodes and a decoder can produce): all-white and all-black images, distorted 64 times each, stay
    within [-1, 1] and are changed."""
    from tlcm.latent_lpips.data import distort

    x = torch.cat([torch.ones(32, 3, 32, 32), -torch.ones(32, 3, 32, 32)])
    out = distort(x, torch.Generator().manual_seed(0))
    assert out.min() >= -1 and out.max() <= 1 and not torch.equal(out, x)


def test_only_the_distorted_latents_of_a_triplet_get_latent_noise(tiny_sd):
    """make_triplets: the reference of each triplet is the VAE's mode latent E(x) of its drawn image
    itself (noise only goes to the distorted a and b, so P(ref, .) measures a distortion of a clean
    image); which images are drawn is the generator's first draw, randint(N, (n,)). With
    latent_noise 0.5 about half the distorted latents get noise: a and b differ from E(x) always."""
    from tlcm.latent_lpips.data import make_triplets

    vae = tiny_sd.vae.eval().requires_grad_(False)
    images = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    n = 8

    def proxy(x, y):
        return (x - y).abs().mean((1, 2, 3))

    z = make_triplets(vae, proxy, images, n, 0.5, torch.Generator().manual_seed(1))["z"]
    picked = torch.randint(len(images), (n,), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        clean = vae.encode(images[picked]).latent_dist.mode() * vae.config.scaling_factor
    torch.testing.assert_close(z[:, 0], clean, rtol=1e-4, atol=1e-5)
    assert ((z[:, 1:] - clean[:, None]).flatten(2).abs().amax(2) > 1e-3).all()


class _IdentityVAE(torch.nn.Module):
    """Encode and decode are the identity; ``config``: the VAE config under test."""

    def __init__(self, **config) -> None:
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))
        self.config = SimpleNamespace(shift_factor=None, **config)

    def encode(self, x):
        return SimpleNamespace(latent_dist=SimpleNamespace(mode=lambda: x.clone()))

    def decode(self, z):
        return SimpleNamespace(sample=z.clone())


def test_triplet_latents_are_scaled_as_the_familys_pipeline_does():
    """An SDXL VAE with latents_mean / latents_std (Playground v2.5): StableDiffusionXLPipeline
    decodes ``latents * std / scaling_factor + mean``, so the triplets' latents are
    ``(z - mean) * scaling_factor / std``; an SD1.5 VAE ignores both fields."""
    from tlcm.latent_lpips.data import _to_image, _to_latent, make_triplets
    from tlcm.models.families import FAMILIES

    mean, std = [0.2, -0.4, 0.0], [2.0, 0.5, 1.0]
    vae = _IdentityVAE(scaling_factor=0.5, latents_mean=mean, latents_std=std)
    mean, std = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    sdxl, sd = FAMILIES["StableDiffusionXLPipeline"], FAMILIES["StableDiffusionPipeline"]
    x = torch.tensor([0.6, 0.1, -0.3]).view(1, 3, 1, 1)
    latents = _to_latent(vae, x, sdxl)
    torch.testing.assert_close(latents, torch.tensor([0.1, 0.5, -0.15]).view(1, 3, 1, 1))
    torch.testing.assert_close(_to_image(vae, latents, sdxl), latents * std / 0.5 + mean)
    torch.testing.assert_close(_to_latent(vae, x, sd), x * 0.5)
    proxy = lambda a, b: (a - b).square().flatten(1).mean(1)  # noqa: E731
    images = torch.rand(4, 3, 8, 8) * 2 - 1
    z_sdxl = make_triplets(vae, proxy, images, 3, 0.5, torch.Generator().manual_seed(0), family=sdxl)["z"]
    z_sd = make_triplets(vae, proxy, images, 3, 0.5, torch.Generator().manual_seed(0))["z"]
    # the same draws: only the clean latents' scaling differs (the latent noise is added after it)
    torch.testing.assert_close(z_sdxl[:, 0], (z_sd[:, 0] / 0.5 - mean) * 0.5 / std)


def test_the_trainer_scales_latents_as_its_model_folders_family(tiny_sdxl_dir, tmp_path, monkeypatch):
    """``python -m tlcm.latent_lpips.train --model SDXL_FOLDER``: the family of the folder's
    model_index.json scales the training and held-out triplets (recorded as "family"), not SD1.5's."""
    import shutil

    import tlcm.latent_lpips.train as trainer

    families, make = [], trainer.make_triplets

    def spy(*args, **kwargs):
        families.append(kwargs.get("family"))
        return make(*args, **kwargs)

    monkeypatch.setattr(trainer, "make_triplets", spy)

    model = tmp_path / "sdxl"
    shutil.copytree(tiny_sdxl_dir, model)
    config = json.loads((model / "vae" / "config.json").read_text())
    channels = config["latent_channels"]
    config |= {"latents_mean": [0.1] * channels, "latents_std": [2.0] * channels}
    (model / "vae" / "config.json").write_text(json.dumps(config))
    out = tmp_path / "ll.safetensors"
    args = TrainArgs(model=model, out=out, steps=1, batch_size=2, triplets=4, heldout_triplets=2)
    record = trainer.main(replace(args, channels=(2, 2, 4, 4, 4)))
    assert record["family"] == "StableDiffusionXLPipeline"
    assert [f.pipeline_name for f in families] == ["StableDiffusionXLPipeline"] * 2
