"""The method zoo at equal compute: the engine's denoiser-evaluation count (a hand count of MLCD
single_jump; gradient checkpointing does not count twice), the step scaling to one budget, the
runner's reuse of finished runs, and the table from run folders on disk."""

import importlib.util
import json
from dataclasses import replace

import pytest
from engine_helpers import shrink
from fake_processes import FakeProcesses
from loss_cases import real_images

from ablations import zoo
from recipes import PRESETS
from recipes.tlcm import mlcd
from tlcm.config import Phase
from tlcm.engine import train
from tlcm.losses.mlcd import MLCDConfig

B, STEPS = 2, 2


def single_jump(tiny_sd_dir, out, checkpointing=False):
    """recipes:mlcd with single-jump states, STEPS steps of batch B on the tiny SD pipeline."""
    recipe = shrink(mlcd(), tiny_sd_dir, out, steps=STEPS, batch_size=B)
    phase = recipe.phases["mlcd"]
    phase = replace(phase, losses={"mlcd": MLCDConfig(states="single_jump")})
    runtime = replace(recipe.runtime, gradient_checkpointing=checkpointing, resume=False)
    return replace(recipe, phases={"mlcd": phase}, runtime=runtime)


def test_single_jump_count_is_the_hand_count(tiny_sd_dir, tmp_path):
    # per step (guidance w = 2 != 1: each teacher call is one CFG call of 2B):
    #   the single jump T -> t_m (mds_trajectory, 1 round)   2B
    #   the teacher's DDIM step t_m -> t_n (teacher_solve)    2B
    #   the stop-grad target g(x_tn, t_n)                     B
    #   the student g(x_tm, t_m)                              B
    per_step = 2 * B + 2 * B + B + B
    recipe = single_jump(tiny_sd_dir, tmp_path / "run")
    assert recipe.model.guidance_scale != 1
    run = train(recipe)
    assert run.denoiser_evals == STEPS * per_step
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["denoiser_evals"] for x in lines] == [per_step * (i + 1) for i in range(STEPS)]


def test_gradient_checkpointing_does_not_count_the_recompute(tiny_sd_dir, tmp_path):
    plain = train(single_jump(tiny_sd_dir, tmp_path / "plain"))
    ckpt = train(single_jump(tiny_sd_dir, tmp_path / "ckpt", checkpointing=True))
    assert ckpt.student.net.is_gradient_checkpointing
    assert ckpt.denoiser_evals == plain.denoiser_evals == STEPS * 6 * B


def test_an_ema_target_counts_like_the_online_one(tiny_sd_dir, tmp_path):
    recipe = single_jump(tiny_sd_dir, tmp_path / "ema")  # its target: functional_denoiser
    losses = {"mlcd": MLCDConfig(states="single_jump", target="ema")}
    recipe = replace(recipe, phases={"mlcd": replace(recipe.phases["mlcd"], losses=losses)})
    assert train(recipe).denoiser_evals == STEPS * 6 * B


def test_add_counts_one_student_and_one_cfg_teacher_call_per_sample(tiny_sd_dir, tmp_path):
    """recipes:add's losses (ADD's distillation on pixels + the teacher-feature hinge GAN on real
    data), B = 2, 2 steps: per step the student's prediction from real data noised to its grid (B;
    no q-step sample) and one CFG teacher call for the distillation target (2B, w = 2); the
    discriminator's encoder passes and the VAE are not denoiser evaluations. 3B per step."""
    add = PRESETS["add"]
    base = shrink(mlcd(), tiny_sd_dir, tmp_path / "run", steps=STEPS, batch_size=B)
    assert base.model.guidance_scale != 1
    (phase,) = add.phases.values()
    recipe = replace(
        base,
        phases={"add": Phase(steps=STEPS, lr=1e-3, batch_size=B, losses=phase.losses)},
        student=replace(base.student, grid=add.student.grid),
        data=replace(base.data, images=real_images(tmp_path), prompts=None),
    )
    assert train(recipe).denoiser_evals == STEPS * 3 * B


def test_the_probe_measures_the_engine_count(tiny_sd_dir, tmp_path):
    assert zoo.probe_rates(single_jump(tiny_sd_dir, tmp_path / "probe"), 2) == {"mlcd": 6 * B}


@pytest.mark.parametrize(
    ("steps", "rates", "budget"),
    [
        ({"mlcd": 300, "lcd": 100, "dmd": 150}, {"mlcd": 201.6, "lcd": 192.0, "dmd": 80.0}, 91_680),
        ({"lcm": 300}, {"lcm": 64.0}, 91_680),
        ({"a": 75, "b": 75, "c": 75, "d": 75}, {"a": 64.0, "b": 64.0, "c": 64.0, "d": 64.0}, 91_680),
        ({"a": 10, "b": 300}, {"a": 500.0, "b": 7.0}, 12_345),
        ({"a": 1, "b": 1}, {"a": 3.0, "b": 5.0}, 1_000_003),
    ],
)
def test_scaled_steps_meet_the_budget_within_one_step(steps, rates, budget):
    out = zoo.scale_steps(steps, rates, budget)
    assert set(out) == set(steps) and min(out.values()) >= 1
    assert abs(zoo.planned_cost(out, rates) - budget) <= max(rates.values())
    ratios = [out[n] / steps[n] for n in steps]  # one factor for every phase (up to rounding)
    assert max(ratios) - min(ratios) <= 2 / min(steps.values())


def test_the_budget_recipe_keeps_its_steps():
    steps, rates = {"mlcd": 300, "lcd": 100, "dmd": 150}, {"mlcd": 201.6, "lcd": 192.0, "dmd": 80.0}
    assert zoo.scale_steps(steps, rates, zoo.planned_cost(steps, rates)) == steps


def _finished(runs, miniature, seed, method, m=8, scores=None):
    out = zoo.run_dir(runs, miniature, seed, method)
    out.mkdir(parents=True)
    info = {"seed": seed, "num_milestones": m, "phase_steps": {"p": 10}, "denoiser_evals": 1000 + seed,
            "train_seconds": 60.0 * (seed + 1), "train_eval_cpu_seconds": 120.0,
            "own_sampler": "gamma 0", "tlcm_sampler": "gamma 0, first move 1"}  # fmt: skip
    (out / "zoo.json").write_text(json.dumps(info))
    for name in zoo.SAMPLERS.values():
        rows = scores or [{"steps": n, "alignment": 0.9, "fd": 5.0} for n in zoo.STEPS if n <= m]
        (out / name).write_text(json.dumps(rows))
    return out


def test_the_runner_reuses_finished_runs(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    _finished(runs, "unet", 0, "pcm", m=4)
    steps = {"unet": {"pcm": {"p": 10}, "tcd": {"tcd": 7}}}  # pcm as the finished run was trained
    monkeypatch.setattr(
        zoo, "plan", lambda args: (448.0, steps, {"unet": {"pcm": {"p": 64.0}, "tcd": {"tcd": 64.0}}})
    )
    monkeypatch.setattr(zoo, "write_docs", lambda args, budget=None: "")
    procs = FakeProcesses(polls=1).patch(monkeypatch, zoo)
    args = zoo.Args(methods=("pcm", "tcd"), miniatures=("unet",), seeds=(0,), runs=runs)
    zoo.main(args)
    assert len(procs.cmds) == 1
    only = procs.values("--only")[0]
    assert only == "unet/tcd"
    assert json.loads(procs.values("--phase-steps")[0]) == {"tcd": 7}
    procs.cmds.clear()
    zoo.main(replace(args, dry_run=True, fresh=True))  # a dry run starts nothing
    assert procs.cmds == []


def test_the_table_shows_mean_min_max_and_na_above_m(tmp_path):
    runs = tmp_path / "runs"
    for seed, (align, fd) in enumerate([(0.85, 4.0), (0.95, 6.0)]):
        rows = [{"steps": n, "alignment": align, "fd": fd} for n in (1, 2, 4)]
        _finished(runs, "unet", seed, "pcm", m=4, scores=rows)
    text = zoo.table(runs, "unet", ["pcm", "tcd"], 500)
    pcm = [line for line in text.splitlines() if line.startswith("| pcm")][0]
    cells = pcm.split(" | ")
    assert cells[2] == "2"  # seeds
    assert cells[3] == "0.900 (0.850-0.950) / 5.00 (4.00-6.00)"  # 1 step
    assert cells[6] == "n/a"  # 8 steps > M = 4
    assert "1000 (1000-1001)" in pcm  # counted evaluations over the seeds
    assert "tcd" not in text  # no runs: no row
    assert "| teacher (benchmarks/results/teacher_table.json)" in text  # its best w at 500 prompts


def test_write_docs_labels_one_seed_preliminary(tmp_path):
    """One seed: the docs say "preliminary"; the two pictures go where the arguments say (with
    matplotlib) and the docs show them by name."""
    runs = tmp_path / "runs"
    _finished(runs, "unet", 0, "tcd")
    pictures = {"plot": tmp_path / "fd.png", "frontier": tmp_path / "frontier.png"}
    args = zoo.Args(runs=runs, table=tmp_path / "zoo.md", **pictures)
    text = zoo.write_docs(args, 91_680)
    assert (
        "Preliminary: 1 seed(s)" in text
        and "## UNet miniature" in text
        and "flow" not in text.split("##")[-1]
    )
    assert "![FD and alignment vs steps](fd.png)" in text and "(frontier.png)" in text
    if importlib.util.find_spec("matplotlib"):
        assert all(path.is_file() for path in pictures.values())


def test_the_verdict_names_the_lowest_fd_and_our_rank(tmp_path):
    runs = tmp_path / "runs"
    for seed, fd in enumerate((4.0, 4.4)):  # pcm: lower FD than tlcm-full at 2 and 4 steps, seeds apart
        _finished(
            runs,
            "unet",
            seed,
            "pcm",
            m=4,
            scores=[{"steps": n, "alignment": 0.8, "fd": fd} for n in (1, 2, 4)],
        )
    for seed, fd in enumerate((4.2, 6.0)):  # overlaps pcm's range at 1 step only via its min
        rows = [{"steps": n, "alignment": 0.9, "fd": fd + (n == 1) * -1.0} for n in (1, 2, 4, 8)]
        _finished(runs, "unet", seed, zoo.BASE_METHOD, scores=rows)
    rows = {
        line.split(" | ")[0][2:]: line.split(" | ")
        for line in zoo.verdict(runs, "unet", [zoo.BASE_METHOD, "pcm"], 500).splitlines()[2:]
    }
    assert rows["2"][1] == "pcm (own sampler) 4.20 (0.800)"
    assert rows["2"][2] == "5.10 (0.900), 2 of 2" and rows["2"][3] == "no"  # 4.4 > 4.2: the seeds overlap
    assert rows["1"][1].startswith("tlcm-full") and rows["1"][3] == "-"  # 3.2 / 5.0 beat pcm's 4.0 / 4.4
    assert rows["8"][2] == "5.10 (0.900), 1 of 1"  # pcm has M = 4
    # the committed UNet teacher: best FD 7.80 at 2 steps, 5.43 at 4, 4.23 at 8
    assert rows["2"][5] == "pcm, tlcm-full |" and rows["8"][5] == "none |"


def test_the_table_reports_the_discriminators_held_out_accuracy(tmp_path):
    runs = tmp_path / "runs"
    for seed, (real, fake) in enumerate([(1.0, 0.0), (0.9, 0.5)]):
        out = _finished(runs, "unet", seed, "dmd2", m=4)
        early = [{"step": i, "gan/d_acc_real": 0.0, "gan/d_acc_fake": 0.0} for i in range(8)]
        late = [{"step": 8 + i, "gan/d_acc_real": real, "gan/d_acc_fake": fake} for i in range(2)]
        (out / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in early + late) + "\n")
    _finished(runs, "unet", 0, "pcm", m=4)  # no GAN: no accuracy
    text = zoo.table(runs, "unet", ["dmd2", "pcm"], 500)
    dmd2 = [line for line in text.splitlines() if line.startswith("| dmd2")][0]
    pcm = [line for line in text.splitlines() if line.startswith("| pcm")][0]
    # the last 20 %: balanced (1 + 0) / 2, (0.9 + 0.5) / 2; real (1 + 0.9) / 2, fake (0 + 0.5) / 2
    assert dmd2.rstrip(" |").endswith("0.60 (0.50-0.70); real 0.95, fake 0.25")
    assert pcm.rstrip(" |").endswith("-")


def test_the_leftover_budget_goes_to_the_largest_remainders_first():
    """10 and 20 steps at 1 evaluation each scaled to 40: exactly 13.33 and 26.67; one step is left
    after rounding down and goes to the larger remainder: 13 and 27 (the nearest), not 14 and 26."""
    assert zoo.scale_steps({"a": 10, "b": 20}, {"a": 1.0, "b": 1.0}, 40) == {"a": 13, "b": 27}
    assert zoo.scale_steps({"a": 20, "b": 10}, {"a": 1.0, "b": 1.0}, 40) == {"a": 27, "b": 13}


def test_a_methods_better_sampler_is_the_one_with_the_lower_mean_fd():
    means = {
        ("own", 2): (0.8, 5.0, [4.0, 6.0]),
        ("tlcm", 2): (0.7, 3.0, [2.5, 3.5]),
        ("own", 4): (0.9, 2.0, [2.0]),
    }
    assert zoo.better_sampler(means, 2) == (3.0, 0.7, "tlcm", [2.5, 3.5])
    assert zoo.better_sampler(means, 4) == (2.0, 0.9, "own", [2.0])
    assert zoo.better_sampler(means, 8) is None


def test_the_docs_are_preliminary_while_any_miniature_has_fewer_than_three_seeds(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "plot", lambda args, names: None)
    monkeypatch.setattr(zoo, "frontier", lambda args, names: None)
    runs = tmp_path / "runs"
    for seed in range(3):
        _finished(runs, "unet", seed, "tcd")
    args = zoo.Args(runs=runs, table=tmp_path / "zoo.md")
    assert "Preliminary" not in zoo.write_docs(args)  # 3 seeds on the one miniature with runs
    _finished(runs, "flow", 0, "tcd")
    assert "**Preliminary: 1 seed(s)**" in zoo.write_docs(args)  # the flow miniature has one
