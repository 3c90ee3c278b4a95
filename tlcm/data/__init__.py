"""Data-free training data: prompt sources and the teacher trajectory cache."""
