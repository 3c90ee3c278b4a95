"""A ninth red-team audit, area gpu-models (2026-12-06; 15 mutants, all 15 survived then against
the fast tests, since nothing in test_benchmark_units.py builds the full-size configs; each is now
caught by tests/test_gpu_models_units.py): the full-size random-weight models the GPU benchmark
builds from configs (benchmarks/gpu_models.py: the SDXL, SD1.5, SD3.5-Large and FLUX.1-dev networks,
their text encoders and VAEs, the dtype they are built in, the VAEs' latent scaling per family, the
shared T5 folder's links and the bytes recorded), the memory benchmark's inventory
(benchmarks/memory.py: base-weight copies, one UNet's bytes) and the section order of
benchmarks/gpu.py. The benchmark's first GPU run has minutes of machine time, so a wrong model size
there would silently make every number wrong: the new tests build each full-size pipeline on the
``meta`` device (no memory, under a second) and count its parameters against the released
checkpoints'."""

from run import Mutant

MODELS = "benchmarks/gpu_models.py"
MEMORY = "benchmarks/memory.py"
GPU = "benchmarks/gpu.py"
T = "tests/test_gpu_models_units.py"
T_COUNTS = f"{T}::test_the_full_size_models_have_the_released_parameter_counts"
T_DTYPE = f"{T}::test_the_flow_models_are_built_in_bf16_and_the_default_dtype_is_restored"
T_LATENTS = f"{T}::test_each_family_has_its_vae_scaling_text_lengths_and_scheduler"
T_LINKS = f"{T}::test_folder_bytes_follow_the_linked_t5_folder_and_the_index_names_its_classes"
T_INVENTORY = f"{T}::test_the_inventory_counts_weight_copies_and_adamws_two_moments"
T_SECTIONS = f"{T}::test_sections_run_in_the_benchmarks_order_whatever_order_they_are_asked_in"

MUTANTS = [
    # ---- the full-size networks' sizes ---------------------------------------------------------
    Mutant(
        "r9g-sdxl-transformer-depth",
        MODELS,
        '"transformer_layers_per_block": (1, 2, 10),',
        '"transformer_layers_per_block": (1, 2, 2),',
        (T_COUNTS,),
        "the SDXL UNet's 1280-channel blocks hold 2 transformer layers, not 10: a 1.6 B network "
        "timed and reported as SDXL's 2.57 B",
    ),
    Mutant(
        "r9g-bigg-depth",
        MODELS,
        '"num_hidden_layers": 32,',
        '"num_hidden_layers": 24,',
        (T_COUNTS,),
        "OpenCLIP bigG's text tower with 24 layers (ViT-H's depth) instead of 32: SDXL's and SD3's "
        "second text encoder 25 % too small",
    ),
    Mutant(
        "r9g-t5-ffn",
        MODELS,
        '"d_ff": 10240,',
        '"d_ff": 16384,',
        (T_COUNTS,),
        "T5-XXL's gated FFN at 4 x d_model (16384) instead of v1.1's 10240: a 6.8 B encoder, its "
        "memory and the embedding cache's hashing time overstated",
    ),
    Mutant(
        "r9g-flux-schnell",
        MODELS,
        '"guidance_embeds": True,',
        '"guidance_embeds": False,',
        (T_COUNTS,),
        "FLUX.1-schnell's transformer (no guidance embedding) stands in for FLUX.1-dev: the "
        "guidance-distilled model the inference section feeds guidance 3.5 is not the one built",
    ),
    Mutant(
        "r9g-sd3-medium-depth",
        MODELS,
        '"num_layers": 38,',
        '"num_layers": 24,',
        (T_COUNTS,),
        "SD3's transformer with SD3-Medium's 24 joint blocks: a 5 B network timed as SD3.5-Large",
    ),
    Mutant(
        "r9g-sd3-clip-without-projection",
        MODELS,
        "(CLIPTextModel if flux else CLIPTextModelWithProjection)",
        "(CLIPTextModelWithProjection if flux else CLIPTextModel)",
        (T_COUNTS,),
        "SD3 gets a CLIP-L without its text projection (and FLUX one with): SD3's pooled "
        "embeddings are not the projected ones its pipeline concatenates",
    ),
    # ---- dtypes ---------------------------------------------------------------------------------
    Mutant(
        "r9g-flow-built-fp32",
        MODELS,
        "with torch.device(device), _default_dtype(torch.bfloat16):",
        "with torch.device(device):",
        (T_DTYPE,),
        "SD3 / FLUX built in fp32: 48 GB for FLUX's transformer alone, beside its bf16 copy on save; "
        "the build runs out of memory on an 80 GB card",
    ),
    Mutant(
        "r9g-default-dtype-left-bf16",
        MODELS,
        "    finally:\n        torch.set_default_dtype(previous)",
        "    finally:\n        torch.set_default_dtype(dtype)",
        (T_DTYPE,),
        "building SD3 / FLUX leaves torch's default dtype bf16: every model and tensor the "
        "benchmark creates afterwards (the SDXL sections' LoRAs, the miniature) silently bf16",
    ),
    # ---- latent scaling per family --------------------------------------------------------------
    Mutant(
        "r9g-sd-vae-scalings-swapped",
        MODELS,
        "scaling_factor=0.13025 if sdxl else 0.18215",
        "scaling_factor=0.18215 if sdxl else 0.13025",
        (T_LATENTS,),
        "SDXL's latents scaled by SD1.5's 0.18215 and SD1.5's by SDXL's: latents off unit variance, "
        "every loss and sampler sees the wrong noise-to-signal ratio",
    ),
    Mutant(
        "r9g-sd3-vae-gets-fluxs-scaling",
        MODELS,
        '"sd3": {"scaling_factor": 1.5305, "shift_factor": 0.0609},',
        '"sd3": {"scaling_factor": 0.3611, "shift_factor": 0.1159},',
        (T_LATENTS,),
        "SD3's VAE carries FLUX's scaling and shift factors: its latents 4 x too small",
    ),
    # ---- the shared T5 folder and the recorded sizes ---------------------------------------------
    Mutant(
        "r9g-t5-links-swapped",
        MODELS,
        'parts = (("text_encoder", "T5EncoderModel"), ("tokenizer", "T5TokenizerFast"))',
        'parts = (("tokenizer", "T5TokenizerFast"), ("text_encoder", "T5EncoderModel"))',
        (T_LINKS,),
        "SD3's text_encoder_3 links to the T5 tokenizer's folder and tokenizer_3 to the encoder's: "
        "the folder does not load",
    ),
    Mutant(
        "r9g-folder-bytes-skip-links",
        MODELS,
        "walk = os.walk(folder, followlinks=True)",
        "walk = os.walk(folder)",
        (T_LINKS,),
        "saved GB of SD3 / FLUX leaves out the linked 9.5 GB T5 encoder",
    ),
    # ---- the memory benchmark's inventory --------------------------------------------------------
    Mutant(
        "r9g-one-unet-bytes-summed",
        MEMORY,
        "unet_bytes = sum(p.numel() * p.element_size() for p in base)",
        "unet_bytes += sum(p.numel() * p.element_size() for p in base)",
        (T_INVENTORY,),
        "'one base UNet's weights' adds up every UNet alive: the full fine-tune's row is twice one UNet",
    ),
    Mutant(
        "r9g-lora-counted-as-base",
        MEMORY,
        'base = [p for n, p in unet.named_parameters() if "lora_" not in n]',
        "base = list(unet.parameters())",
        (T_INVENTORY,),
        "the LoRA adapters counted as base weights: 'one base UNet' includes the adapters",
    ),
    # ---- benchmarks/gpu.py ------------------------------------------------------------------------
    Mutant(
        "r9g-sections-in-the-asked-order",
        GPU,
        "args.sections = [s for s in SECTIONS if s in args.sections]",
        "args.sections = list(dict.fromkeys(args.sections))",
        (T_SECTIONS,),
        "sections run in the order typed: 'sd15,build' runs sd15 before its folder's build step, "
        "and a time limit drops the most wanted sections instead of the last",
    ),
]
