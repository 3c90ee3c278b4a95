"""Breakages of what leaves a run: the exported LoRA (tlcm/export.py) and the toy scores that
rank students (tlcm/toy/metrics.py), and the model card's code (tlcm/card.py); see run.py."""

from run import Mutant

EXPORT = "tlcm/export.py"
EXPORT_TESTS = (
    "tests/test_export.py",
    "tests/test_families.py::test_lora_export_loads_and_samples_in_plain_diffusers",
)

MUTANTS = [
    Mutant(
        "kohya-up-down-swapped",
        EXPORT,
        'parts = {"lora_A.weight": "lora_down.weight", "lora_B.weight": "lora_up.weight"}',
        'parts = {"lora_A.weight": "lora_up.weight", "lora_B.weight": "lora_down.weight"}',
        EXPORT_TESTS,
        "kohya's down / up names on the wrong factors",
    ),
    Mutant(
        "kohya-alpha-is-rank",
        EXPORT,
        "return kohya_state_dict(weights, config.lora_alpha), metadata",
        "return kohya_state_dict(weights, config.lora_rank), metadata",
        EXPORT_TESTS,
        "the kohya file scales by 1 (alpha = rank) whatever the student's alpha",
    ),
    Mutant(
        "diffusers-lora-config-dropped",
        EXPORT,
        'metadata = {"format": "pt", "lora_adapter_metadata": json.dumps(config, indent=2, sort_keys=True)}',
        'metadata = {"format": "pt"}',
        EXPORT_TESTS,
        "diffusers loads the LoRA with alpha = rank (the config is what carries alpha)",
    ),
    Mutant(
        "alignment-against-wrong-labels",
        "tlcm/toy/metrics.py",
        "alignment = (self.classifier.head(feats).argmax(1) == labels).float().mean().item()",
        "alignment = (self.classifier.head(feats).argmax(1) == labels.roll(1)).float().mean().item()",
        ("tests/test_toy.py",),
        "each image scored against another prompt's digit",
    ),
    Mutant(
        "card-snippet-scheduler-folder",
        "tlcm/card.py",
        'pipe.scheduler = {scheduler}.from_pretrained("{out}/scheduler")',
        'pipe.scheduler = {scheduler}.from_pretrained("{out}")',
        ("tests/test_export.py::test_the_cards_diffusers_snippet_runs_as_written",),
        "the model card's code loads the scheduler from the wrong folder: it fails for every user",
    ),
    Mutant(
        "card-snippet-loads-no-lora",
        "tlcm/card.py",
        """imports, load = pipeline, f'pipe.load_lora_weights("{out}")\\npipe.fuse_lora()'""",
        """imports, load = pipeline, f'pipe.fuse_lora()'""",
        ("tests/test_export.py::test_the_cards_diffusers_snippet_runs_as_written",),
        "the model card's code samples the base model with the student's scheduler",
    ),
]
