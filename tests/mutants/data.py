"""Breakages of the training data's maths: the teacher trajectory cache (tlcm/data/trajectories.py)
and the embedding store (tlcm/data/embeddings.py); see run.py."""

from run import Mutant

TRAJ = "tlcm/data/trajectories.py"
EMB = "tlcm/data/embeddings.py"
TRAJ_TESTS = ("tests/test_trajectories.py",)
EMB_TESTS = ("tests/test_embeddings.py",)

MUTANTS = [
    Mutant(
        "cache-pair-off-by-one",
        TRAJ,
        "pairs = torch.stack([self._slices[s][r, p : p + 2] for s, r, p in reads])",
        "pairs = torch.stack([self._slices[s][r, p + 1 : p + 3] for s, r, p in reads])",
        TRAJ_TESTS,
        "x_tm and x_tn read one grid point late: not the states at t_m, t_n",
    ),
    Mutant(
        "cache-times-swapped",
        TRAJ,
        "times = torch.stack([self.grid[pos], self.grid[pos + 1], self.edges[seg]])",
        "times = torch.stack([self.grid[pos + 1], self.grid[pos], self.edges[seg]])",
        TRAJ_TESTS,
        "t_m and t_n swapped",
    ),
    Mutant(
        "cache-edge-of-next-segment",
        TRAJ,
        "times = torch.stack([self.grid[pos], self.grid[pos + 1], self.edges[seg]])",
        "times = torch.stack([self.grid[pos], self.grid[pos + 1], self.edges[seg + 1]])",
        TRAJ_TESTS,
        "t_s is the segment's upper edge",
    ),
    Mutant(
        "cache-other-prompts-row",
        TRAJ,
        "rows = self.row_order[self.prompt_first[prompts] + (v * self.prompt_count[prompts]).long()]",
        "rows = self.row_order[self.prompt_first[prompts.flip(0)] + (v * self.prompt_count[prompts]).long()]",
        TRAJ_TESTS,
        "a trajectory of another sample's prompt",
    ),
    Mutant(
        "cache-grid-misses-segment-top",
        TRAJ,
        "for t in range(edges[s + 1], edges[s], -skip)] + [0]",
        "for t in range(edges[s + 1] - 1, edges[s], -skip)] + [0]",
        TRAJ_TESTS,
        "the grid does not start each segment at its upper edge",
    ),
    Mutant(
        "cache-teacher-unguided",
        TRAJ,
        "teacher = Guided(counted, guidance_scale, uncond[:1])",
        "teacher = Guided(counted, 1.0, uncond[:1])",
        TRAJ_TESTS,
        "trajectories of the unguided teacher",
    ),
    Mutant(
        "cache-row-seed",
        TRAJ,
        "gens = [torch.Generator().manual_seed(seed * 1_000_003 + int(r)) for r in chunk]",
        "gens = [torch.Generator().manual_seed(seed * 1_000_003 + int(r - first)) for r in chunk]",
        TRAJ_TESTS,
        "every shard repeats the first shard's noise",
    ),
    Mutant(
        "embeddings-row-in-chunk",
        EMB,
        'return self._pick([(chunks[r // c], r % c) for r in rows], "")',
        'return self._pick([(chunks[r // c], 0) for r in rows], "")',
        EMB_TESTS,
        "every prompt of a chunk gets the chunk's first embedding",
    ),
]
