"""Where weights come from, never a download: installed Python packages, or a local folder written by
``save_pretrained`` (checked before loading, and refused when it is incomplete)."""

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


def check_model_dir(path: str | Path, what: str) -> Path:
    """The folder as a Path, or a ModelError saying what is missing (CLIP, captioner, reranker, answer model)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ModelError(f"{what} folder {folder} does not exist or is not a directory")
    if not (folder / "config.json").is_file():
        raise ModelError(f"{what} folder {folder} has no config.json; expected a transformers "
                         "save_pretrained folder")
    return folder


def model_class(folder: Path, mapping, what: str):
    """The transformers class an Auto class would build for this folder, found without loading weights."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"cannot read the {what} config in {folder}: {exc}") from exc
    try:
        return mapping[type(config)]
    except KeyError:
        raise ModelError(f"{folder} holds a '{config.model_type}' model, which is not a {what}") from None


def load_model(auto, folder: Path, what: str, device: str):
    """auto.from_pretrained, refusing a checkpoint that lacks some of the weights the class needs.

    transformers only warns about missing weights and initialises them at random: a BLIP captioner's folder
    loads as a contrastive BlipModel with random projections, and would quietly index noise.
    """
    try:
        model, info = auto.from_pretrained(folder, local_files_only=True, output_loading_info=True)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"cannot load a {what} from {folder}: {exc}") from exc
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        raise ModelError(f"{folder} is not a complete {type(model).__name__} checkpoint, so not a usable "
                         f"{what}: {len(missing)} weights are missing (e.g. {missing[0]})")
    return model.to(device).eval()
