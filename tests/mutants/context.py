"""Breakages of the step's context (tlcm/losses/base.py: draws and shared work); see run.py."""

from run import Mutant

BASE = "tlcm/losses/base.py"
TESTS = ("tests/test_shared_work.py", "tests/test_losses.py", "tests/test_device_discipline.py")

MUTANTS = [
    Mutant(
        "shared-work-recomputed",
        BASE,
        "        if key not in self._work:\n            self._work[key] = compute()",
        "        if True:\n            self._work[key] = compute()",
        TESTS,
        "every loss that asks for the student's samples or prediction gets a new draw",
    ),
    Mutant(
        "rand-is-randn",
        BASE,
        "return torch.rand(shape, generator=self.generator, device=self.device)",
        "return torch.randn(shape, generator=self.generator, device=self.device).abs()",
        TESTS + ("tests/test_objectives.py",),
        "uniform draws (timesteps, TCD's s, guidance scales) from |N(0, 1)|",
    ),
]
