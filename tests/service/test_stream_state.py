"""The stream model inside a real stream: surprise and boundaries on real media, checkpoints, resume.

Everything is real: PyAV decoding, Whisper, MiniLM, EfficientNet-Lite0, the bundled Mamba weights,
SQLite; the kill test kills a real Ray actor and lets Ray restart it.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.support.helpers import media, normalise
from manta_models.loader import ModelSet
from manta_models.statespace.stream_model import StreamStepper, load_stream_model
from streaming.ingest.pipeline import StreamPipeline
from streaming.records import AudioChunk, VideoFrame
from streaming.settings import Settings
from streaming.source.media import MediaSource, parse_source
from streaming.memory.store import StreamStore
from streaming.search.view import StreamView

POPEYE_P1_CUTS = [12.375, 27.375, 40.083]  # ../shared/media/README.md (ffmpeg scene > 0.3)


@pytest.fixture(scope="module")
def models():
    return ModelSet(Settings(asr_model="tiny.en"))


def _ingest(path, models, store=None, **overrides) -> StreamPipeline:
    pipe = StreamPipeline("s", path.name, parse_source(str(path)), Settings(asr_model="tiny.en", **overrides),
                          models.for_stream, store=store)
    pipe.probe()
    pipe.start()
    assert pipe.join(timeout=120)
    assert pipe.status.state == "finished", pipe.status.last_error
    return pipe


def test_a_silent_film_gets_a_segment_every_few_seconds_and_boundaries_at_its_cuts(models, tmp_path):
    path = media("popeye_sinbad_1936_p1.mkv")  # no audio track: pictures alone drive the timeline
    store = StreamStore(tmp_path / "p1.sqlite")
    segs = StreamView.of(_ingest(path, models, store)).segments()
    starts = [s.t0 for s in segs]
    assert len(segs) >= 19 and starts == pytest.approx([3.0 * i for i in range(len(segs))])
    assert all(s.surprise_raw is not None and len(s.summary) == 64 for s in segs[1:])
    found = [c for c in POPEYE_P1_CUTS if any(s.boundary and abs(s.t0 - c) <= 3.0 for s in segs)]
    proposed = [s.t0 for s in segs if s.boundary]
    assert len(found) >= 2, (proposed, POPEYE_P1_CUTS)
    assert len(proposed) <= 2 * len(POPEYE_P1_CUTS), proposed  # boundaries, not noise
    # Everything committed is on disk, with the model's outputs, in the same order.
    stored = store.load("s").segments
    assert [(s.seq, s.t0, s.surprise, s.boundary) for s in stored] == \
        [(s.seq, s.t0, s.surprise, s.boundary) for s in segs]


def test_a_file_source_resumes_at_the_checkpointed_time():
    spec = parse_source(str(media("manifesto_audiobook_titlecard.mp4")))
    chunks = []
    for chunk in MediaSource(spec, frame_fps=1.0, start_at=40.0):
        chunks.append(chunk)
        if len(chunks) > 12:
            break
    audio = [c for c in chunks if isinstance(c, AudioChunk)]
    frames = [c for c in chunks if isinstance(c, VideoFrame)]
    assert audio[0].t0 == pytest.approx(40.0, abs=0.01)
    assert all(b.t0 == pytest.approx(a.t1, abs=1e-3) for a, b in zip(audio, audio[1:]))  # contiguous
    assert frames and min(f.t for f in frames) >= 40.0
    with pytest.raises(ValueError):
        MediaSource(spec, start_at=-1.0)


@pytest.mark.slow
def test_a_killed_stream_actor_resumes_its_exact_state_and_loses_nothing(service):
    import ray

    from actors.stream_actor import actor_name, store_path

    sid = service.add(str(media("manifesto_audiobook_titlecard.mp4")), name="killme")
    deadline = time.monotonic() + 120
    while True:  # kill it mid-stream: once some segments are committed, before the end
        st = service.get(f"/v1/streams/{sid}").json()
        if st.get("segments", 0) >= 3:
            break
        assert st.get("state") not in ("finished", "failed") and time.monotonic() < deadline, st
        time.sleep(0.05)
    before = service.get(f"/v1/streams/{sid}/segments").json()["segments"]
    ray.kill(ray.get_actor(actor_name(sid), namespace=service.settings.namespace), no_restart=False)
    status = service.wait(sid, timeout=180)
    assert status["state"] == "finished", status
    assert "restarted after a crash" in status["notes"]
    assert status["media_seconds"] == pytest.approx(88.0, abs=0.5)
    after = service.get(f"/v1/streams/{sid}/segments").json()["segments"]
    assert before and before[-1]["end"] < 80.0, "the kill came too late to test a resume"

    # Nothing committed was lost or changed, nothing was repeated.
    assert after[:len(before)] == before
    assert [s["seq"] for s in after] == list(range(len(after)))
    assert all(b["start"] >= a["end"] - 1e-6 for a, b in zip(after, after[1:]))
    spoken = normalise(" ".join(s["text"] for s in after))
    assert spoken.count("haunting europe") == 1 and spoken.count("workers of the world") == 1
    assert "danish" in spoken  # to the last word

    # The state was resumed exactly: an uninterrupted stepper over the same inputs, in this
    # process, reproduces every segment's surprise and summary, those after the restart included.
    stored = StreamStore(store_path(service.settings.data_dir, sid)).load(sid)
    assert [s.seq for s in stored.segments] == [s["seq"] for s in after]
    stepper = StreamStepper(load_stream_model("bundled"))
    for seg, feats in zip(stored.segments, stored.features):
        out = stepper.step(feats.blocks())
        if out.surprise is None:
            assert seg.surprise_raw is None
        else:
            assert seg.surprise_raw == pytest.approx(out.surprise, abs=1e-5), seg.seq
        assert np.allclose(seg.summary, out.summary, atol=1e-5), seg.seq


def test_visual_items_and_frames_survive_a_reload_and_what_follows_the_checkpoint_is_seen_again(tmp_path):
    from streaming.records import LabelSpan, SeenLabels, ShownText
    from streaming.memory.store import Checkpoint

    store = StreamStore(tmp_path / "v.sqlite")
    vec = np.ones(4, dtype=np.float32) / 2
    title = ShownText(0, "ocr", "Audible Socialism", 0.0, 5.0, 0.99, (0.2, 0.3, 0.8, 0.5))
    cue = ShownText(1, "subtitle", "I'm Sinbad the sailor", 13.0, 16.4)
    labels = LabelSpan(2, 0.0, 3.0, (("airliner", 0.8), ("wing", 0.1)))
    later = ShownText(3, "ocr", "seen after the checkpoint", 20.0, 21.0, 0.9)
    frames = [(SeenLabels(1.0, (("airliner", 0.8),), cut=None), np.arange(8, dtype=np.float32)),
              (SeenLabels(12.4, (("valley", 0.5),), cut=12.375), np.ones(8, dtype=np.float32)),
              (SeenLabels(20.5, (("maze", 0.3),), cut=None), np.zeros(8, dtype=np.float32))]
    cp = Checkpoint(next_seq=0, resume_t=18.0, media_seconds=21.0, wall=0.0)
    store.commit([], [], [], cp, [(title, vec), (cue, vec), (labels, vec), (later, vec)], frames)
    # The title is still on screen at the next commit: the same record, a longer span.
    store.commit([], [], [], cp, [(ShownText(0, "ocr", "Audible Socialism", 0.0, 17.0, 0.99, title.box), vec)], [])
    restored = store.load("s")
    items = {it.id: it for it, _ in restored.items}
    assert set(items) == {0, 1, 2}  # id 3 began after the checkpoint: the resumed source reads it again
    assert items[0].t1 == 17.0 and items[0].box == title.box and items[1] == cue and items[2] == labels
    assert all(np.array_equal(v, vec) for _, v in restored.items)
    assert [(f.t, f.cut) for f, _ in restored.frames] == [(1.0, None), (12.4, 12.375)]
    assert np.array_equal(restored.frames[0][1], np.arange(8, dtype=np.float32))
