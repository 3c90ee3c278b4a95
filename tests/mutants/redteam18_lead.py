"""Round 18, the lead's changes (2026-12-07): the zoo frontier's label placement (no two labels
overlap, each stays inside its panel), a loaded pipeline's decoder and family for a loss in your
own loop (``pipeline_decoder``: the family's latent scale and shift; ``family_of``: a pipeline
without one named), and examples/own_losses.py's step (aux_step trains the loss's own model), and reward-thresholds checking
the reward's own thresholds when none are given."""

from run import Mutant

PLOTS = "ablations/zoo_plots.py"
FAMILIES = "tlcm/models/families/__init__.py"
T_LABELS = "tests/test_ablation_units.py::test_frontier_labels_do_not_overlap_and_stay_inside_the_panel"
T_MARKS = "tests/test_ablation_units.py::test_a_frontier_label_does_not_cover_another_point"
T_ORDER = "tests/test_ablation_units.py::test_frontier_labels_of_two_close_points_keep_their_order"
W = "tests/test_walkthrough7_docs_units.py::"
T_DECODER = W + "test_the_pipeline_decoder_undoes_the_latent_scale_and_shift"
T_FAMILY = W + "test_a_pipeline_without_a_family_is_named"
T_EXAMPLE = (
    "tests/test_examples.py::test_every_loss_runs_in_an_own_loop_and_resumes_from_its_checkpoint_state"
)

MUTANTS = [
    Mutant(
        "frontier-labels-overlap",
        PLOTS,
        "            return inside and all(",
        "            return inside or all(",
        (T_LABELS,),
        "three methods at one point: their labels drawn over each other, unreadable",
    ),
    Mutant(
        "frontier-labels-cover-other-points",
        PLOTS,
        "for px, py, pw, ph in placed + marks",
        "for px, py, pw, ph in placed",
        (T_MARKS,),
        "a label drawn over another method's point: it reads as that point's",
    ),
    Mutant(
        "frontier-labels-leave-the-panel",
        PLOTS,
        "inside = 0 <= ax_ and ax_ + w <= 1 and 0 <= ay and ay + h <= 1",
        "inside = True",
        (T_LABELS,),
        "a method at the right edge: its label cut off by the panel",
    ),
    Mutant(
        "frontier-labels-placed-bottom-first",
        PLOTS,
        "key=lambda i: -anchors[i][1]",
        "key=lambda i: anchors[i][1]",
        (T_ORDER,),
        "labels placed from the bottom: two close points' labels crossed, each nearer the other point",
    ),
    Mutant(
        "pipeline-decoder-skips-the-scale",
        FAMILIES,
        "    return partial(family_of(pipe).decode, pipe)",
        "    return lambda latents: pipe.vae.decode(latents).sample.clamp(-1, 1)",
        (T_DECODER,),
        "the bare vae.decode: wrong images for every pixel loss, no error",
    ),
    Mutant(
        "family-of-any-pipeline-a-key-error",
        FAMILIES,
        "    if name not in FAMILIES:\n        raise TLCMError(",
        "    if False:\n        raise TLCMError(",
        (T_FAMILY,),
        "an unsupported pipeline: a bare KeyError instead of the supported list",
    ),
    Mutant(
        "own-losses-example-without-aux-step",
        "examples/own_losses.py",
        "aux = loss.aux_step([ctx])",
        "aux = {}",
        (T_EXAMPLE,),
        "the example every own-loop user copies trains no fake score and no discriminator",
    ),
    Mutant(
        "reward-thresholds-default-to-the-papers",
        "tlcm/eval/reward_thresholds.py",
        "    s0 = scorer.s0 if s0 is None else s0",
        "    s0 = 16.0 if s0 is None else s0",
        ("tests/test_reward_thresholds_units.py::test_thresholds_left_unset_are_the_rewards_own",),
        "the command checks 16 on the digit reward's log-probabilities: every sample 'active', says nothing",
    ),
]
