"""Ablations: recipe variants derived from ``recipes:tlcm-full`` and a runner that trains and
scores them (``python -m ablations.run``), writing docs/ablations.md."""
