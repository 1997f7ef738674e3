"""The CLI's configuration: a serve_config.yaml's settings, then the command line's overrides."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from actors.cli.client import CliError
from streaming.settings import Settings


def load_config(path: str | None) -> dict[str, Any]:
    """The app's ``settings:`` mapping (plus host/port) from a serve_config.yaml."""
    if not path:
        return {}
    try:
        doc = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise CliError(f"cannot read config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise CliError(f"config {path} is not valid YAML: {exc}") from None
    apps = doc.get("applications") or [{}]
    settings = dict((apps[0].get("args") or {}).get("settings") or {})
    http = doc.get("http_options") or {}
    for key in ("host", "port"):
        if key in http:
            settings.setdefault(key, http[key])
    return settings


def make_settings(args: argparse.Namespace) -> Settings:
    overrides = load_config(getattr(args, "config", None))
    for key in ("host", "port", "ray_address", "asr_model"):
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = value
    try:
        settings = Settings.load(overrides)
        settings.api_token()  # an unreadable or too short token file is said now, in one line
        return settings
    except ValueError as exc:
        raise CliError(f"invalid configuration: {exc}") from None
