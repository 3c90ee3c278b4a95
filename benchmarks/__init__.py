"""The benchmark scripts (benchmarks/README.md), run from the repository root as modules:
``python -m benchmarks.NAME``."""
