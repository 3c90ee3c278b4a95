"""Breakages of the model families' calls (tlcm/models/families/) and of the FID maths; see run.py.

Not here, being equivalent: SDXL's time ids with height and width swapped (latents are square:
``Family.latent_shape``)."""

from run import Mutant

FLUX = "tlcm/models/families/flux.py"
SD = "tlcm/models/families/sd.py"
SD3 = "tlcm/models/families/sd3.py"
FAMILIES = "tests/test_families.py"
FD = "tlcm/toy/metrics.py"
FID = "tlcm/eval/fid.py"
FD_TESTS = ("tests/test_toy.py", "tests/test_eval.py")

MUTANTS = [
    Mutant(
        "flux-pack-channel-order",
        FLUX,
        'return rearrange(x, "b c (h ph) (w pw) -> b (h w) (c ph pw)", ph=2, pw=2)',
        'return rearrange(x, "b c (h ph) (w pw) -> b (h w) (ph pw c)", ph=2, pw=2)',
        (FAMILIES,),
        "tokens packed in another order than FluxPipeline._pack_latents",
    ),
    Mutant(
        "flux-unpack-rows-columns",
        FLUX,
        '"b (h w) (c ph pw) -> b c (h ph) (w pw)", h=h // 2, w=w // 2, ph=2, pw=2)',
        '"b (h w) (c pw ph) -> b c (h ph) (w pw)", h=h // 2, w=w // 2, ph=2, pw=2)',
        (FAMILIES,),
        "unpack is not pack's inverse",
    ),
    Mutant(
        "flux-timestep-not-sigma",
        FLUX,
        "timestep=t / 1000,  # FLUX's",
        "timestep=t,  # FLUX's",
        (FAMILIES,),
        "the transformer gets t where it takes sigma = t / T",
    ),
    Mutant(
        "flux-image-ids-transposed",
        FLUX,
        "torch.stack([torch.zeros_like(i), i, j], dim=-1)",
        "torch.stack([torch.zeros_like(i), j, i], dim=-1)",
        (FAMILIES,),
        "rotary positions of rows and columns swapped",
    ),
    Mutant(
        "flux-shift-not-exponentiated",
        FLUX,
        'return FlowSchedule(config.get("num_train_timesteps", 1000), math.exp(mu))',
        'return FlowSchedule(config.get("num_train_timesteps", 1000), mu)',
        (FAMILIES, "tests/test_flow_objectives.py"),
        "the resolution shift is mu, not FluxPipeline's exp(mu)",
    ),
    Mutant(
        "sdxl-negative-pooled-is-positive",
        SD,
        "return Conditioning(emb, pooled, ids), Conditioning(neg, neg_pooled, ids)",
        "return Conditioning(emb, pooled, ids), Conditioning(neg, pooled, ids)",
        (FAMILIES, "tests/test_conditioning.py"),
        "the unconditional branch keeps the prompt's pooled embedding",
    ),
    Mutant(
        "sd3-pooled-dropped",
        SD3,
        "            pooled_projections=cond.pooled_embeds,\n            timestep=t,",
        "            pooled_projections=cond.pooled_embeds * 0,\n            timestep=t,",
        (FAMILIES,),
        "SD3's pooled text embedding never reaches the transformer",
    ),
    Mutant(
        "fd-cross-term-sign",
        FD,
        "torch.trace(sigma1 + sigma2 - 2 * cross)",
        "torch.trace(sigma1 + sigma2 + 2 * cross)",
        FD_TESTS,
        "Frechet distance with the cross term's sign flipped",
    ),
    Mutant(
        "fd-cross-not-rooted",
        FD,
        "cross = _sqrtm_psd(root1 @ sigma2 @ root1)",
        "cross = root1 @ sigma2 @ root1",
        FD_TESTS,
        "(S1^1/2 S2 S1^1/2) without its square root",
    ),
    Mutant(
        "fid-biased-covariance",
        FID,
        "return mu, (self.outer - self.n * torch.outer(mu, mu)) / (self.n - 1)",
        "return mu, (self.outer - self.n * torch.outer(mu, mu)) / self.n",
        FD_TESTS,
        "the covariance divided by N, not N - 1",
    ),
]
