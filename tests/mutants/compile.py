"""Breakages of regional compilation (``Student.compile``, ``--recipes.runtime.compile``): which
weights each compiled block runs and which backend compiles it; see run.py."""

from run import Mutant

STUDENT = "tlcm/models/student.py"
SWEEP = "tests/test_loss_contract.py::test_compiled_blocks_give_the_eager_gradients[mlcd]"
DEEP_COPY = "tests/test_loss_contract.py::test_compiled_blocks_of_a_deep_copy_run_the_copy"

MUTANTS = [
    Mutant(
        "every-block-runs-the-first-blocks-weights",
        STUDENT,
        "compiled[cls] = torch.compile(cls.forward, backend=backend)\n"
        "                block.forward = MethodType(compiled[cls], block)",
        "compiled[cls] = torch.compile(block.forward, backend=backend)\n"
        "                block.forward = compiled[cls]",
        (SWEEP,),
        "the compiled bound method of a class's first block serves every block of that class",
    ),
    Mutant(
        "deep-copy-runs-the-original",
        STUDENT,
        "                block.forward = MethodType(compiled[cls], block)",
        "                block.forward = (lambda f, b: lambda *a, **k: f(b, *a, **k))(compiled[cls], block)",
        (DEEP_COPY,),
        "a closure over the block: deepcopy keeps the function, so the fake score's copy runs the teacher",
    ),
    Mutant(
        "compile-backend-ignored",
        "tlcm/engine.py",
        "self.student.compile(rt.compile_backend)",
        "self.student.compile()",
        (SWEEP,),
        "--recipes.runtime.compile-backend aot_eager silently compiles with inductor",
    ),
]
