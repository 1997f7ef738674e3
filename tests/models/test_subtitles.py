"""Subtitle tracks inside containers become timed cues: PGS bitmaps from a real Blu-ray style MKV, checked
against its human SRT; SRT/ASS text muxed here (real captions, real video) into MKV and MP4 (mov_text)."""

from __future__ import annotations

import fractions
import re
from pathlib import Path

import av
import numpy as np
import pytest

from tests.support.helpers import media, normalise
from streaming import records
from streaming.source.subtitles import SubtitleCue, SubtitleTrack, subtitle_streams
from streaming.search.view import StreamView

MS = fractions.Fraction(1, 1000)


def mux_with_subtitles(video_path, srt_path, out_path, codec: str = "subrip") -> Path:
    """Copy the audio/video of video_path into out_path (container from its suffix) with the subtitle file
    srt_path (.srt, .ass, .vtt: anything FFmpeg reads) as one more track, language "eng". The subtitles are
    copied when `codec` is what the file already holds, else re-encoded (e.g. codec="mov_text" for MP4)."""
    out_path = Path(out_path)
    with av.open(str(video_path)) as vin, av.open(str(srt_path)) as sin, av.open(str(out_path), "w") as out:
        sub_in = sin.streams.subtitles[0]
        copied = [s for s in vin.streams if s.type in ("video", "audio")]
        outs = {s.index: out.add_stream_from_template(s) for s in copied}
        same = av.Codec(codec, "w").id == sub_in.codec_context.codec.id  # "subrip" and "srt" are one codec
        sub_packets = [p for p in sin.demux(sub_in) if p.pts is not None]
        if same:
            sub_out = out.add_stream_from_template(sub_in)
        else:
            # Re-encode: decode each cue to its ASS event line and hand that to the target encoder.
            sets = [(p, sub_in.codec_context.decode2(p)) for p in sub_packets]
            sub_out = out.add_stream(codec)
            # The decoder makes its ASS header when it opens (first decode2); encoders to mov_text need it.
            sub_out.codec_context.subtitle_header = sub_in.codec_context.subtitle_header
            sub_out.codec_context.time_base = MS
            sub_packets = []
            for p, sset in sets:
                start, dur = round(p.pts * p.time_base / MS), round(p.duration * p.time_base / MS)
                for rect in sset.rects if sset else ():
                    enc = sub_out.codec_context.encode_subtitle(
                        av.subtitles.subtitle.SubtitleSet.create(rect.ass, 0, dur, start))
                    enc.pts = enc.dts = start
                    enc.duration, enc.time_base = dur, MS
                    sub_packets.append(enc)
        sub_out.metadata["language"] = "eng"
        sub_packets.sort(key=lambda p: p.pts * p.time_base)
        for packet in vin.demux(copied):
            if packet.dts is None:
                continue
            while sub_packets and sub_packets[0].pts * sub_packets[0].time_base <= packet.dts * packet.time_base:
                cue = sub_packets.pop(0)
                cue.stream = sub_out
                out.mux(cue)
            packet.stream = outs[packet.stream_index]
            out.mux(packet)
        for cue in sub_packets:
            cue.stream = sub_out
            out.mux(cue)
    return out_path


def parse_srt(path) -> list[tuple[float, float, str]]:
    stamp = r"(\d+):(\d\d):(\d\d)[,.](\d{3})"
    cues = []
    for block in re.split(r"\n\s*\n", Path(path).read_text(encoding="utf-8-sig").replace("\r", "")):
        m = re.search(stamp + r"\s*-->\s*" + stamp, block)
        if m:
            h0, m0, s0, ms0, h1, m1, s1, ms1 = map(int, m.groups())
            text = block[m.end():].strip()
            cues.append((h0 * 3600 + m0 * 60 + s0 + ms0 / 1000, h1 * 3600 + m1 * 60 + s1 + ms1 / 1000, text))
    return cues


def decode_track(path, end_t=None) -> tuple[list[SubtitleCue], SubtitleTrack]:
    with av.open(str(path)) as container:
        [stream] = subtitle_streams(container)
        video = container.streams.video[0]
        zero = float(video.start_time * video.time_base) if video.start_time is not None else 0.0
        # Captions are timed against the picture, and MKV shifts every track by the AAC priming (23 ms).
        track = SubtitleTrack(stream, lambda t: t - zero)
        cues = []
        for packet in container.demux(stream):
            cues += track.push(packet)
        cues += track.flush(end_t)
    assert all(c.t1 > c.t0 for c in cues)
    assert all(a.t0 <= b.t0 for a, b in zip(cues, cues[1:])), "cues out of order"
    return cues, track


def pgs_display_sets(path) -> list[tuple[float, int]]:
    """(time, number of objects shown) of every PGS display set, read from the raw bytes: an independent
    count of what the file holds. Each packet starts with its composition segment (0x16)."""
    with av.open(str(path)) as container:
        stream = container.streams.subtitles[0]
        sets = [(float(p.pts * p.time_base), bytes(p)) for p in container.demux(stream) if p.size]
    assert all(data[0] == 0x16 for _, data in sets)
    return [(t, data[13]) for t, data in sets]


@pytest.mark.parametrize("name,known", [
    ("popeye_sinbad_1936_p1", (13.0, 16.4)),  # "I'm Sinbad the sailor / So hearty and hale"
    ("popeye_sinbad_1936_p3", (40.32, 42.52)),  # "Ohh! Let me go! Let me go!"
])
def test_pgs_bitmap_cues_match_the_human_srt(name, known):
    path = media(f"{name}.mkv")
    truth = parse_srt(media(f"{name}.eng.srt"))
    with av.open(str(path)) as container:
        video_end = max(float((p.pts + p.duration) * p.time_base)
                        for p in container.demux(container.streams.video[0]) if p.pts is not None)
    cues, track = decode_track(path, end_t=video_end)
    assert track.errors == 0 and track.language == "eng" and track.track == 1
    sets = pgs_display_sets(path)
    shown = [t for t, objects in sets if objects]
    # One cue per display set that shows something; each ends at the next set (a clear) ...
    assert [c.t0 for c in cues] == pytest.approx(shown, abs=1e-6)
    for cue in cues[:-1]:
        assert cue.t1 == pytest.approx(next(t for t, _ in sets if t > cue.t0), abs=1e-6)
    # ... except the last, never cleared in these cut clips: it ends where the picture does (flush's end_t).
    assert cues[-1].t1 == pytest.approx(video_end, abs=1e-6) and sets[-1][1] > 0
    # Every cue is a human SRT cue (the last one's true end is not in the file). The SRT cues left over have no
    # display set in the file at all (p1: composition number 0x16 is missing between the clears at 47.0 and
    # 50.5 s; p3 lacks 4 of 15 the same way).
    matched = []
    for cue in cues:
        i = min(range(len(truth)), key=lambda i: abs(truth[i][0] - cue.t0))
        t0, t1, text = truth[i]
        assert abs(cue.t0 - t0) < 0.5 and (abs(cue.t1 - t1) < 0.5 or cue is cues[-1]), (cue.t0, cue.t1, text)
        matched.append(i)
    assert len(set(matched)) == len(cues)
    for t0, t1, text in (c for i, c in enumerate(truth) if i not in matched):
        assert not any(t0 - 0.5 < t < t1 for t in shown), f"display set of {text!r} was lost"
    for cue in cues:
        assert cue.text is None and cue.image.dtype == np.uint8 and cue.image.shape[2] == 3
        light = cue.image.max(axis=2) > 200
        assert light.sum() > 1000, "no visible text"
        # Light text on black, cropped to the text: black margins, and far narrower than the 1920 px plane.
        assert cue.image[0].max() == 0 and cue.image[-1].max() == 0 and cue.image[:, 0].max() == 0
        assert cue.image.shape[1] < 1300 and light.mean() < 0.4
    [cue] = [c for c in cues if abs(c.t0 - known[0]) < 0.5]
    assert cue.t1 == pytest.approx(known[1], abs=0.5)


def test_pgs_two_line_cue():
    cues, _ = decode_track(media("popeye_sinbad_1936_p1.mkv"), end_t=60.0)
    sinbad = cues[1]  # "I'm Sinbad the sailor / So hearty and hale": two lines, twice as tall as one
    assert (sinbad.t0, sinbad.t1) == pytest.approx((13.0, 16.417), abs=0.002)
    assert sinbad.image.shape[0] > 1.6 * cues[0].image.shape[0]


@pytest.mark.parametrize("suffix,codec", [(".mkv", "subrip"), (".mp4", "mov_text")])
def test_srt_captions_muxed_into_a_container(tmp_path, suffix, codec):
    srt = media("manifesto_audiobook_titlecard.autocaptions.srt")
    out = mux_with_subtitles(media("manifesto_audiobook_titlecard.mp4"), srt, tmp_path / f"m{suffix}", codec)
    with av.open(str(out)) as container:
        assert [s.type for s in container.streams] == ["video", "audio", "subtitle"]
    cues, track = decode_track(out)
    truth = parse_srt(srt)
    assert track.errors == 0 and track.language == "eng" and track.track == 2
    # MP4 fills the gaps between cues with empty samples; they must not become cues.
    assert len(cues) == len(truth) == 37
    for cue, (t0, t1, text) in zip(cues, truth):
        assert cue.image is None and cue.text == text
        assert cue.t0 == pytest.approx(t0, abs=0.002) and cue.t1 == pytest.approx(t1, abs=0.002)
    seventh = cues[6]
    assert "preamble a spectre is haunting europe" in normalise(seventh.text)
    assert (seventh.t0, seventh.t1) == pytest.approx((19.039, 22.96), abs=0.05)


ASS = r"""[Script Info]
ScriptType: v4.00+
PlayResX: 384
PlayResY: 288

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding
Style: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: 0,0:00:01.00,0:00:03.50,Default,,0,0,0,,{\i1}A spectre{\i0} is haunting\NEurope
Dialogue: 0,0:00:04.25,0:00:06.00,Default,,0,0,0,,{\an8}{\b1}Workers,{\b0} of the world,\hunite!
Dialogue: 0,0:00:07.00,0:00:09.10,Default,,0,0,0,,{\pos(10,20)\c&H00FFFF&}plain   spaced {a comment}text
"""
ASS_TRUTH = [(1.0, 3.5, "A spectre is haunting\nEurope"), (4.25, 6.0, "Workers, of the world, unite!"),
             (7.0, 9.1, "plain spaced text")]


@pytest.mark.parametrize("suffix,codec", [(".mkv", "ass"), (".mp4", "mov_text")])
def test_ass_markup_is_stripped(tmp_path, suffix, codec):
    ass = tmp_path / "hand.ass"
    ass.write_text(ASS, encoding="utf-8")
    out = mux_with_subtitles(media("manifesto_audiobook_titlecard.mp4"), ass, tmp_path / f"a{suffix}", codec)
    cues, track = decode_track(out)
    assert track.errors == 0
    assert [(round(c.t0, 3), round(c.t1, 3), c.text) for c in cues] == ASS_TRUTH


def pgs_packets():
    """The popeye PGS stream (still open) and its packets: [0] the first cue at 0 s, [1] its clear at 4 s."""
    container = av.open(str(media("popeye_sinbad_1936_p1.mkv")))
    stream = container.streams.subtitles[0]
    return container, stream, [p for p in container.demux(stream) if p.size]


def test_garbage_packets_are_counted_not_raised(tmp_path):
    container, stream, packets = pgs_packets()
    with container:
        track = SubtitleTrack(stream, lambda t: t)
        for data in (b"\x00garbage", np.random.default_rng(0).bytes(300), b"\x16\x00\x13" + bytes(range(19)) + b"\x80\x00\x00"):
            junk = av.Packet(data)
            junk.pts, junk.time_base, junk.stream = 500, MS, stream
            track.push(junk)
        # The decoder is still usable afterwards: the next real cue and its clear come out whole.
        assert track.push(packets[0]) == []
        [cue] = track.push(packets[1])
        assert (cue.t0, cue.t1) == (0.0, 4.0) and cue.image is not None
    # Text decoders reject invalid UTF-8 with InvalidDataError: counted in .errors, not raised.
    out = mux_with_subtitles(media("manifesto_audiobook_titlecard.mp4"),
                             media("manifesto_audiobook_titlecard.autocaptions.srt"), tmp_path / "m.mkv")
    with av.open(str(out)) as container:
        stream = container.streams.subtitles[0]
        track = SubtitleTrack(stream, lambda t: t)
        junk = av.Packet(b"\xff\xfe\x80 not utf-8 \xc3")
        junk.pts, junk.duration, junk.time_base, junk.stream = 1000, 500, MS, stream
        assert track.push(junk) == [] and track.errors == 1
        first = next(p for p in container.demux(stream) if p.size)
        [cue] = track.push(first)
        assert cue.text == "this audiobook is in the public domain"


def test_open_cues_close_at_flush_and_repeats_merge():
    container, stream, packets = pgs_packets()
    with container:
        shift = 5.0  # the caller's media time: this stream's timeline starts 5 s into it
        track = SubtitleTrack(stream, lambda t: t + shift)
        assert track.push(packets[0]) == []
        [cue] = track.flush(end_t=shift + 2.5)
        assert (cue.t0, cue.t1) == (shift, shift + 2.5)
        assert track.flush(end_t=99.0) == []  # nothing open any more

        # A display set sent again (broadcast acquisition points) continues the cue; the clear ends it.
        track = SubtitleTrack(stream, lambda t: t)
        again = av.Packet(bytes(packets[0]))
        again.pts, again.time_base, again.stream = 1500, MS, stream
        assert track.push(packets[0]) == [] and track.push(again) == []
        [cue] = track.push(packets[1])
        assert (cue.t0, cue.t1) == (0.0, 4.0)

        # No end_t: the cue ends with its packet's duration (4 s here), never at or before it starts.
        track = SubtitleTrack(stream, lambda t: t)
        track.push(packets[0])
        [cue] = track.flush()
        assert (cue.t0, cue.t1) == (0.0, 4.0)


def test_inputs_are_validated(tmp_path, caplog):
    container, stream, packets = pgs_packets()
    with container:
        assert subtitle_streams(container) == [stream]
        with pytest.raises(ValueError):
            SubtitleTrack(container.streams.video[0], lambda t: t)
        with pytest.raises(ValueError):
            SubtitleTrack(stream, 0.0)
        track = SubtitleTrack(stream, lambda t: t)
        with pytest.raises(ValueError):
            track.push(None)
        with pytest.raises(ValueError):
            track.flush(end_t=float("nan"))
        wrong = av.Packet(b"x")
        wrong.pts, wrong.time_base = 0, MS  # stream_index 0: the video stream
        with pytest.raises(ValueError):
            track.push(wrong)
    assert SubtitleCue is records.SubtitleCue  # the pipeline tells cues apart by this class
    with av.open(str(media("manifesto_audiobook_titlecard.mp4"))) as plain:
        assert subtitle_streams(plain) == []
    # A track FFmpeg can mux but not decode (TTML in MP4): skipped with a warning, refused by SubtitleTrack.
    with av.open(str(tmp_path / "ttml.mp4"), "w") as out:
        ttml = out.add_mux_stream("ttml")
        packet = av.Packet(b'<tt xmlns="http://www.w3.org/ns/ttml"><body><p begin="0s" end="1s">hi</p></body></tt>')
        packet.pts, packet.dts, packet.duration, packet.time_base, packet.stream = 0, 0, 1000, MS, ttml
        out.mux(packet)
    with av.open(str(tmp_path / "ttml.mp4")) as container:
        assert subtitle_streams(container) == [] and "no decoder" in caplog.text
        with pytest.raises(ValueError):
            SubtitleTrack(container.streams.subtitles[0], lambda t: t)


def test_text_subtitle_track_is_searchable_as_shown_next_to_speech(tmp_path):
    """End to end in one process (real PyAV, Whisper tiny.en, MiniLM): captions carried in an MKV
    answer as subtitles with their cue times, while speech from the same file still answers."""
    from manta_models.loader import ModelSet
    from streaming.ingest.pipeline import StreamPipeline
    from streaming.settings import Settings
    from streaming.source.media import parse_source

    video = media("manifesto_audiobook_titlecard.mp4")
    out = mux_with_subtitles(video, media("manifesto_audiobook_titlecard.autocaptions.srt"), tmp_path / "m.mkv")
    settings = Settings(asr_model="tiny.en", visual_model="off", ocr="off", stream_model="off")
    pipe = StreamPipeline("m", "m", parse_source(str(out)), settings, ModelSet(settings).for_stream)
    pipe.probe()
    pipe.start()
    assert pipe.join(timeout=180) and pipe.status.state == "finished", pipe.status.last_error
    question = pipe.embedder.encode(["a spectre is haunting europe"])[0]
    (cue,) = StreamView.of(pipe).evidence(question, 1, kinds={"subtitle"})
    assert (cue.modality, cue.kind) == ("shown", "subtitle")
    assert "preamble a spectre is haunting europe" in cue.text.lower()
    assert cue.start == pytest.approx(19.039, abs=0.05) and cue.end == pytest.approx(22.96, abs=0.05)
    (said,) = StreamView.of(pipe).evidence(question, 1, kinds={"speech"})
    assert said.kind == "speech" and "haunting europe" in said.text.lower() and said.start < 25.0
    assert pipe.snapshot()["visual"]["subtitle_cues"] >= 30
