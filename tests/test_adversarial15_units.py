"""Red-team round 15, adversarial area: the distribution-matching, GAN, preference, reward and
latent LPIPS pieces that no earlier catalogue pinned (tests/mutants/redteam15_adversarial.py).

Toy setups are test_gan.py's (a linear discriminator D(z) = sum(w * z), the 1-timestep or
1000-timestep VP toy schedule, a table of "real image" latents) and test_dmd.py's."""

import pytest
import torch
import torch.nn.functional as F
from device_discipline import device_discipline  # noqa: F401  (every test runs under DeviceDiscipline)
from test_dmd import ToyFake
from test_gan import REAL_TABLE, LinearDiscriminator, _context, _real_images

from tlcm.diffusion.milestones import StudentGrid
from tlcm.losses.dmd import DMD, DMDConfig
from tlcm.losses.gan import GAN, GANConfig
from tlcm.losses.shared import (
    decoded,
    decoded_prediction,
    samples_key,
    student_prediction,
    student_samples,
)

# ---- DMD ------------------------------------------------------------------------------------------


def test_only_a_lora_fake_score_asks_the_student_for_an_adapter():
    """fake_score "lora" is a second adapter on the shared base ({"dmd_fake": rank}); "full" is its
    own UNet copy and must not leave an unused adapter on the student."""
    assert DMDConfig(fake_rank=3).adapters() == {"dmd_fake": 3}
    assert DMDConfig(fake_score="full", fake_rank=3).adapters() == {}


def test_the_fake_scores_timestep_range_starts_at_0_and_0_updates_are_allowed():
    """fake_t_min = -1 is the VP clean boundary (alpha = 1, nothing to denoise): refused by name;
    fake_t_min = 0 (DMD2's U{0..T-1}) and fake_updates = 0 (a fixed fake score) are valid, and
    then aux_step makes no update and reports nothing."""
    grid = StudentGrid()
    DMDConfig(fake_t_min=0, fake_t_max=999).validate(1000, grid)
    with pytest.raises(ValueError, match="fake_t_min"):
        DMDConfig(fake_t_min=-1).validate(1000, grid)
    DMDConfig(fake_updates=0).validate(1000, grid)
    fake = ToyFake()
    assert DMD(DMDConfig(fake_updates=0), fake).aux_step([]) == {} and fake.b.item() == 0.0


# ---- GAN: re-noising and shared work --------------------------------------------------------------


def _data_context(batch=6, seed=0, **fields):
    return _context(
        batch=batch,
        seed=seed,
        num_train_timesteps=1000,
        real_images=_real_images(),
        prompt_index=torch.arange(batch),
        **fields,
    )[1]


def test_each_side_is_re_noised_at_the_time_inputs_reports_for_it():
    """independent_noise: z_side = alpha(tau_side) x_side + sigma(tau_side) eps_side. With the noise
    made 0 after the student's prediction (B = 6, real = "data"), z_real = alpha(tau_real) x_real and
    z_fake = alpha(tau_fake) x_fake exactly: the times ``inputs`` returns (and hands D) are the
    ones each side was noised to, not the other side's."""
    gan = GAN(
        GANConfig(input="latent", real="data", noise_level=999, independent_noise=True),
        discriminator=LinearDiscriminator(torch.ones(1, 2, 2)),
    )
    ctx = _data_context()
    x_fake = student_prediction(ctx).x0.detach()
    ctx.randn = lambda *shape: torch.zeros(shape)
    z_real, z_fake, tau_real, tau_fake = gan.inputs(ctx)
    assert (tau_real != tau_fake).any()
    alpha = ctx.schedule.alpha
    torch.testing.assert_close(z_real, alpha(tau_real).view(-1, 1, 1, 1) * REAL_TABLE)
    torch.testing.assert_close(z_fake.detach(), alpha(tau_fake).view(-1, 1, 1, 1) * x_fake)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"independent_noise": False}, {"independent_noise": True}),
        (
            {"tau_distribution": "shifted", "tau_shift": 2.0},
            {"tau_distribution": "shifted", "tau_shift": 8.0},
        ),
    ],
)
def test_gans_with_other_re_noising_options_share_no_inputs(first, second):
    """Two GANs of one step (latent input, real "data", noise_level 999) that re-noise differently
    (shared vs independent draws; shift 2 vs 8) each draw their own (tau, eps): the second must not
    be handed the first one's inputs from the step's shared work. The independent one's sides get
    different times, the shared one's the same."""
    ctx = _data_context()
    gans = [
        GAN(
            GANConfig(input="latent", real="data", noise_level=999, **options),
            discriminator=LinearDiscriminator(torch.ones(1, 2, 2)),
        )
        for options in (first, second)
    ]
    a, b = (gan.inputs(ctx) for gan in gans)
    assert not torch.equal(a[0], b[0]) and not torch.equal(a[2], b[2])
    if "independent_noise" in second:
        assert torch.equal(a[2], a[3]) and (b[2] != b[3]).any()


def test_re_noised_pixel_sides_leave_the_clean_decodes_alone():
    """input "pixel" with noise_level > 0 decodes the RE-NOISED sides under keys of their own: the
    step's decode of the clean one-step prediction (reward feedback's ``decoded_prediction``) and of
    the clean q-step samples (DPO's candidates) stay decode(x0), not decode(z)."""
    gan = GAN(
        GANConfig(input="pixel", real="student", noise_level=999),
        discriminator=LinearDiscriminator(torch.ones(1, 2, 2)),
    )
    ctx = _context(batch=3, seed=5, num_train_timesteps=1000, decode=torch.tanh)[1]
    real, fake, _, _ = gan.inputs(ctx)  # first: its decodes are the step's first
    x0, samples = student_prediction(ctx).x0, student_samples(ctx)
    torch.testing.assert_close(decoded_prediction(ctx), torch.tanh(x0), rtol=0, atol=0)
    torch.testing.assert_close(decoded(ctx, samples_key(ctx), samples), torch.tanh(samples), rtol=0, atol=0)
    assert (fake.detach() - torch.tanh(x0.detach())).abs().max() > 1e-2  # D's sides are re-noised
    assert (real - torch.tanh(samples)).abs().max() > 1e-2


# ---- GAN: what aux_step logs ----------------------------------------------------------------------


def test_d_metrics_average_every_micro_batch():
    """Two micro-batches whose real latents are +10 and -10 everywhere, w = 0.1 (d_real = +4, -4),
    disc_steps 1: gan/d_real is the mean over both (0) and gan/d_acc_real the mean accuracy (1/2),
    not the first micro-batch's (4, 1). gan/d_loss: mean of softplus(-d_real) + softplus(d_fake)."""
    gan = GAN(
        GANConfig(input="latent", real="data", disc_lr=1e-6),
        discriminator=LinearDiscriminator(torch.full((1, 2, 2), 0.1)),
    )
    contexts, d_fake = [], []
    for sign in (1.0, -1.0):
        table = torch.full((2, 1, 2, 2), 10.0 * sign)
        ctx = _context(seed=3, real_images=_real_images(table=table), prompt_index=torch.tensor([0, 1]))[1]
        d_fake.append((gan.inputs(ctx)[1].detach() * 0.1).flatten(1).sum(1))
        contexts.append(ctx)
    metrics = gan.aux_step(contexts)
    assert metrics["gan/d_real"].item() == pytest.approx(0.0, abs=1e-6)
    assert metrics["gan/d_acc_real"].item() == pytest.approx(0.5)
    d_real = torch.tensor([4.0, -4.0])
    expected = torch.stack(
        [(F.softplus(-d) + F.softplus(f)).mean() for d, f in zip(d_real, d_fake, strict=True)]
    )
    torch.testing.assert_close(metrics["gan/d_loss"], expected.mean())


# ---- GAN: config edges ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "edge", "message"),
    [
        (
            {"real": "teacher", "teacher_steps": 1000},
            {"real": "teacher", "teacher_steps": 999},
            "teacher_steps",
        ),
        ({"r1_weight": -0.5}, {"r1_weight": 0.0}, "r1_weight >= 0"),
        ({"disc_lr": 0.0}, {"disc_lr": 1e-8}, "disc_lr > 0"),
        (
            {"out_indices": (-1, 2)},
            {"out_indices": (0, 2)},
            "out_indices must be non-empty feature levels >= 0",
        ),
    ],
)
def test_gan_config_edges_pass_and_one_past_them_is_refused(fields, edge, message):
    """On a 1000-step schedule: at most 999 teacher DDIM steps (1000 would need timestep 1000),
    gamma of R1 >= 0 (a negative one rewards a steep D), an AdamW lr > 0 (0: D never trains) and
    feature levels >= 0 (timm would read -1 as the last level)."""
    GANConfig(**edge).validate(1000, StudentGrid())
    with pytest.raises(ValueError, match=message):
        GANConfig(**fields).validate(1000, StudentGrid())


# ---- the discriminator's build ------------------------------------------------------------------------


def test_head_width_and_patch_heads_per_level_follow_the_config():
    """head_channels is the pooled heads' hidden width (conv1x1 C_l -> hidden -> 1) on each of the
    out_indices levels; heads_per_level patch heads per level give len(out_indices) * heads_per_level
    logit maps (PCM: 4 per level on SD1.5, 1 on SDXL)."""
    pooled = GAN(GANConfig(input="latent", head_channels=16, out_indices=(2, 3)), 4).discriminator.heads
    assert [level[0].out_channels for level in pooled.levels] == [16, 16]
    assert [level[2].in_channels for level in pooled.levels] == [16, 16]
    patch = GAN(
        GANConfig(input="latent", head="patch", heads_per_level=2, out_indices=(2, 3)), 4
    ).discriminator
    assert [len(level) for level in patch.heads.levels] == [2, 2]
    logits = patch(torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.zeros(3), None)
    assert len(logits) == 4 and all(head.shape[0] == 3 for head in logits)


def test_a_backbone_file_of_another_shape_is_refused_by_name(tmp_path):
    """A resnet18 file with one conv of another shape (not the stem, which is adapted) is a TLCMError
    naming the key ("shape mismatches"), not a load_state_dict traceback; a file nested under
    "model" (a training script's checkpoint) is unwrapped and loads."""
    import timm
    from safetensors.torch import save_file

    from tlcm.errors import TLCMError

    weights = timm.create_model("resnet18", pretrained=False).state_dict()
    torch.save({"model": weights, "epoch": 3}, tmp_path / "nested.pth")
    gan = GAN(GANConfig(input="latent", backbone_weights=str(tmp_path / "nested.pth")), 4)
    torch.testing.assert_close(
        gan.discriminator.backbone.state_dict()["layer3.0.conv2.weight"], weights["layer3.0.conv2.weight"]
    )
    weights["layer3.0.conv2.weight"] = weights["layer3.0.conv2.weight"][:, :, :1, :1].contiguous()
    save_file(weights, tmp_path / "bad.safetensors")
    with pytest.raises(TLCMError, match=r"shape mismatches \(1\): layer3.0.conv2.weight"):
        GAN(GANConfig(input="latent", backbone_weights=str(tmp_path / "bad.safetensors")), 4)


# ---- preference -----------------------------------------------------------------------------------


def test_dpo_without_a_reference_is_refused_and_reward_mode_needs_none():
    """Diffusion-DPO compares against a frozen reference (eq. 14's e_ref): mode "dpo" without one is
    a ValueError at construction, not a TypeError at the first step; mode "reward" takes none."""
    from test_preference import LatentReward

    from tlcm.losses.preference import Preference, PreferenceConfig

    with pytest.raises(ValueError, match="reference"):
        Preference(PreferenceConfig(mode="dpo"), LatentReward())
    assert Preference(PreferenceConfig(mode="reward"), LatentReward()).reference is None


def test_the_dpo_reference_of_a_student_counts_its_calls(tiny_sd_dir):
    """PreferenceConfig.build on a Student: the reference is the network with the phase-start LoRA
    weights, and each of its calls adds its batch to the base's ``evaluations`` (the run's NFE count
    and cost report), as the student's and teacher's calls do; its output at the start is the
    student's."""
    from tlcm.config import StudentConfig
    from tlcm.losses.preference import PreferenceConfig
    from tlcm.models.base import BaseModel
    from tlcm.models.student import Student

    base = BaseModel.load(tiny_sd_dir)
    student = Student(base, StudentConfig(lora_rank=4, lora_alpha=4.0))
    loss = PreferenceConfig(mode="dpo", reward="digit").build(student)
    cond, _ = base.encode(["a 3", "a 7"])
    x, t = (
        torch.randn(2, *base.latent_shape, generator=torch.Generator().manual_seed(0)),
        torch.tensor([10, 500]),
    )
    before = base.evaluations
    with torch.no_grad():
        ref = loss.reference(x, t, cond)
    assert base.evaluations == before + 2
    with torch.no_grad():
        torch.testing.assert_close(ref, student.denoiser()(x, t, cond))


# ---- documented defaults ----------------------------------------------------------------------------


def test_the_losses_defaults_are_the_papers_they_cite():
    """Each default against the source its docstring names: DMD2 Sec. 4.2's 5 fake updates per
    student update and DMD Sec. 3.2's t' in [0.02 T, 0.98 T]; the TLCM paper's log (non-saturating)
    GAN loss with D's lr 1e-4 (Sec. 5.1); Diffusion-DPO's beta 2000 for SD1.5 and Eq. (11)'s hinge
    (s0 = 16, s_neg = 0, weight 1); ADD's c(t) = alpha_bar_t with the squared l2 distance."""
    from tlcm.losses.add import ADDDistillConfig
    from tlcm.losses.preference import PreferenceConfig

    dmd = DMDConfig()
    assert (dmd.fake_updates, dmd.t_min, dmd.t_max) == (5, 20, 980)
    gan = GANConfig()
    assert (gan.loss_type, gan.generator_loss, gan.disc_lr, gan.real) == (
        "nonsaturating",
        "auto",
        1e-4,
        "student",
    )
    from tlcm.rewards import Reward

    pref = PreferenceConfig()  # s0 / s_neg None: the reward's own, the paper's 16 / 0 by default
    assert (pref.mode, pref.beta, pref.s0, pref.s_neg, pref.negative_weight) == (
        "dpo",
        2000.0,
        None,
        None,
        1.0,
    )
    assert (Reward.s0, Reward.s_neg) == (16.0, 0.0)
    add = ADDDistillConfig()
    assert (add.weighting, add.distance, add.t_min, add.t_max) == ("exponential", "l2", 0, None)


def test_latent_lpips_default_trunk_is_vgg16_without_its_first_three_pools():
    """The paper's network: VGG16's 13 convs in blocks of (2, 2, 3, 3, 3) with widths (64, 128, 256,
    512, 512), one 1x1 head per block; an h x w latent keeps its size through blocks 1-4 and block 5
    runs at h/2 x w/2 (the one max-pool left)."""
    from tlcm.losses.latent_lpips import LatentLPIPS

    net = LatentLPIPS()
    convs = [[m.out_channels for m in block if isinstance(m, torch.nn.Conv2d)] for block in net.blocks]
    assert convs == [[64] * 2, [128] * 2, [256] * 3, [512] * 3, [512] * 3]
    assert net.blocks[0][0].in_channels == 4 and [lin.in_channels for lin in net.lins] == [
        64,
        128,
        256,
        512,
        512,
    ]
    small = LatentLPIPS(2, (1, 1, 1, 1, 1))
    taps = small.features(torch.randn(1, 2, 6, 4))
    assert [tuple(t.shape[-2:]) for t in taps] == [(6, 4)] * 4 + [(3, 2)]


def test_the_generators_backward_leaves_the_timm_backbone_without_gradients():
    """The timm backbone is frozen (requires_grad off): L_G's backward reaches the student through
    it but stores no gradient on its weights (which no optimizer would ever clear: they would pile
    up, a backbone-sized buffer, step after step); nor on the heads (frozen)."""
    gan = GAN(GANConfig(input="latent", timm_model="resnet18"), latent_channels=4)
    param, ctx = _context(shape=(4, 8, 8), num_train_timesteps=1000)
    gan(ctx)["gan"].backward()
    assert param.grad is not None and param.grad.abs() > 0
    assert not any(p.requires_grad for p in gan.discriminator.backbone.parameters())
    assert all(p.grad is None for p in gan.discriminator.parameters())


def test_latent_lpips_block_5_reads_the_2x2_max_of_block_4():
    """The one pool left in the trunk is VGG's 2x2 max-pool: block 5's input is F.max_pool2d of
    block 4's output (B, c_4, h, w) -> (B, c_4, h/2, w/2), not an average."""
    from tlcm.losses.latent_lpips import LatentLPIPS

    torch.manual_seed(0)
    net = LatentLPIPS(2, (3, 3, 4, 4, 5))
    seen = {}
    net.blocks[3].register_forward_hook(lambda m, args, out: seen.update(block4=out))
    net.blocks[4].register_forward_hook(lambda m, args, out: seen.update(block5_in=args[0]))
    net.features(torch.randn(2, 2, 6, 4))
    assert seen["block4"].shape == (2, 4, 6, 4)
    torch.testing.assert_close(seen["block5_in"], F.max_pool2d(seen["block4"], 2), rtol=0, atol=0)


def test_add_distill_refuses_a_timestep_below_0():
    """t ~ U[t_min, t_max] indexes the schedule: t_min = -1 (the VP clean boundary, where the teacher
    has nothing to denoise) is refused; 0 is the default, ADD's whole range."""
    from tlcm.losses.add import ADDDistillConfig

    ADDDistillConfig(t_min=0).validate(1000, StudentGrid())
    with pytest.raises(ValueError, match="need 0 <= t_min"):
        ADDDistillConfig(t_min=-1).validate(1000, StudentGrid())
