"""examples/own_loop.py: a tlcm loss trains a plain diffusers UNet + peft LoRA in another project's
loop (no engine, recipe or Student), and the script runs end to end."""

from __future__ import annotations

import math

import torch
from diffusers import StableDiffusionPipeline

from examples import own_loop
from tlcm.toy import MINIATURE_SD


def test_mlcd_in_an_own_loop_trains_the_lora_and_leaves_the_teacher():
    pipe = StableDiffusionPipeline.from_pretrained(MINIATURE_SD, safety_checker=None)
    teacher_before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    student = own_loop.train(pipe, steps=2, batch=2, lr=1e-2, seed=0)
    assert all(torch.equal(v, teacher_before[k]) for k, v in pipe.unet.state_dict().items())
    lora = {n: p for n, p in student.named_parameters() if p.requires_grad}
    assert lora and all("lora_" in n for n in lora)
    assert any(p.abs().sum() > 0 for n, p in lora.items() if "lora_B" in n)  # B starts at 0: it moved
    frozen = {n: p for n, p in student.named_parameters() if not p.requires_grad}
    assert all(torch.equal(p, teacher_before[n.replace(".base_layer", "")]) for n, p in frozen.items())


def test_the_script_scores_student_and_teacher_and_writes_the_picture(tmp_path, capsys):
    out = tmp_path / "own-loop.png"
    scores = own_loop.main(["--steps", "1", "--batch", "2", "--per-digit", "1", "--out", str(out)])
    assert set(scores) == {"student", "teacher"} and out.stat().st_size > 0
    assert all(0 <= alignment <= 1 and fd >= 0 for alignment, fd in scores.values())
    assert f"wrote {out}" in capsys.readouterr().out


def test_every_loss_runs_in_an_own_loop_and_resumes_from_its_checkpoint_state(capsys):
    """examples/own_losses.py: MLCD with latent LPIPS and an EMA target, DMD with its fake score,
    the teacher-feature GAN, reward feedback and Diffusion-DPO, each a step in a plain loop, its
    aux_step training its own model, its checkpoint_state loaded into a new instance."""
    from examples import own_losses

    logged = own_losses.main(["--steps", "1", "--batch", "2"])
    assert set(logged) == {"mlcd-latent-lpips", "dmd", "gan", "reward", "dpo"}
    assert all(len(rows) == 1 and all(map(math.isfinite, rows[0].values())) for rows in logged.values())
    assert "dmd/fake_loss" in logged["dmd"][0] and "gan/d_loss" in logged["gan"][0]  # aux_step ran
    out = capsys.readouterr().out
    assert all(f"{name}: checkpoint_state saved and loaded" in out for name in logged)
