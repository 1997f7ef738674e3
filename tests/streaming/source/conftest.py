"""Media files made once per module for the source tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.synth import make_mp4, make_wav


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def wav5(media_dir: Path) -> Path:
    return make_wav(media_dir / "tone5.wav", 5.0)


@pytest.fixture(scope="module")
def wav3(media_dir: Path) -> Path:
    return make_wav(media_dir / "tone3.wav", 3.0)


@pytest.fixture(scope="module")
def mp4(media_dir: Path) -> Path:
    return make_mp4(media_dir / "clip.mp4", 4.0)
