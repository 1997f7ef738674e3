"""Finding weights that ship inside installed Python packages (never a download)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


class ModelError(RuntimeError):
    """A model that cannot be found or loaded; the message says what to install or configure."""


def package_dir(module: str) -> Path:
    """The folder of an installed package, found without importing it (some import heavy deps)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModelError(f"the Python package providing '{module}' is not installed")
    return Path(spec.origin).parent
