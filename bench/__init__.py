"""Manta benchmarks: run each with ``python -m bench.<name> [--write]`` from the repository root.

Benchmarks start a private Ray on loopback; its environment must be set before Ray is imported.
"""

from actors.logs import prepare_environment

prepare_environment(local=True)
