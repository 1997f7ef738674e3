"""Manta benchmarks: run each with ``python -m bench.<name> [--write]`` from the repository root."""
