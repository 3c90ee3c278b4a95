"""Runnable examples of tlcm used from other code (tests/test_examples.py runs them)."""
