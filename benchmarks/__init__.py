"""Benchmarks, outside the shipped package: run from the repository root as `python -m benchmarks.NAME`."""
