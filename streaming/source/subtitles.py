"""Subtitle and caption tracks inside a container, decoded into timed cues: plain text, or an OCR-ready bitmap.

Text codecs (subrip, ass, mov_text, webvtt) say when a cue ends. Bitmap codecs often do not: a PGS or DVB cue
stays on screen until the next display set replaces or clears it, so the newest cue is held open and closed by
whatever arrives next, or by flush() at the end of the stream.
"""

from __future__ import annotations

import ctypes
import logging
import math
import numbers
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

import av
import numpy as np

# The one cue record of the pipeline (MediaChunk); re-exported here, next to what makes it.
from streaming.records import SubtitleCue

__all__ = ["SubtitleCue", "SubtitleTrack", "subtitle_streams"]

log = logging.getLogger("manta.subtitles")

UNKNOWN_END_MS = 0xFFFFFFFF  # FFmpeg's "until the next subtitle" (PGS); 0 means the same for text codecs
MARGIN = 8  # px of black around a bitmap cue: OCR engines misread glyphs that touch the edge
DEFAULT_SECONDS = 4.0  # an open cue with no end at all: a typical time on screen
# DVB's end_display_time is the page time-out, an upper bound; the page usually goes away earlier.
TIMEOUT_END_CODECS = {"dvbsub", "dvb_subtitle"}


def subtitle_streams(container) -> list:
    """The container's subtitle streams that this FFmpeg build can decode."""
    if not hasattr(container, "streams"):
        raise ValueError("expected an open PyAV input container")
    for stream in container.streams.subtitles:
        if stream.codec_context is None:  # e.g. ttml, hdmv_text_subtitle, dvb_teletext without libzvbi
            log.warning("subtitle stream %d has no decoder in this FFmpeg build; skipped", stream.index)
    return [stream for stream in container.streams.subtitles if stream.codec_context is not None]


@dataclass(slots=True)
class _Open:
    t0: float
    text: str | None
    image: np.ndarray | None
    cap: float | None  # the latest it can end (DVB time-out)
    guess: float | None  # the packet's duration: PGS muxers fill it in, but not always rightly


class SubtitleTrack:
    """Turns the packets of one subtitle stream into SubtitleCue records, in order."""

    def __init__(self, stream, to_media_time: Callable[[float], float]):
        if getattr(stream, "type", None) != "subtitle":
            raise ValueError(f"expected a PyAV subtitle stream, got {stream!r}")
        if stream.codec_context is None:
            raise ValueError(f"subtitle stream {stream.index} has no decoder in this FFmpeg build")
        if not callable(to_media_time):
            raise ValueError("to_media_time must be callable: stream seconds -> media seconds")
        self.stream, self.track = stream, stream.index
        language = stream.metadata.get("language")
        self.language = None if language in (None, "", "und") else language
        self.errors = 0  # packets that could not be decoded or timed
        self._to_media = to_media_time
        self._ctx = stream.codec_context
        self._bitmap = bool(self._ctx.codec.bitmap_sub)
        self._open: _Open | None = None
        self._warned_palette = False

    def push(self, packet) -> list[SubtitleCue]:
        """Decode one demuxed packet of this stream; return the cues that are now complete."""
        if packet is None or not hasattr(packet, "stream_index"):
            raise ValueError("push() takes a PyAV packet; call flush() at the end of the stream")
        if not packet.size:  # demux() ends each stream with an empty packet (of stream 0): nothing in it
            return []
        if packet.stream_index != self.track:
            raise ValueError(f"packet of stream {packet.stream_index} pushed to track {self.track}")
        tb, ts = packet.time_base or self.stream.time_base, packet.pts if packet.pts is not None else packet.dts
        if ts is None or tb is None:
            self.errors += 1
            return []
        start = float(ts * tb)
        try:
            sset = self._ctx.decode2(packet)
        except av.error.FFmpegError as exc:
            self.errors += 1
            log.debug("track %d: undecodable packet at %.3f s: %s", self.track, start, exc)
            return []
        if sset is None:
            # A bitmap display set may span packets, but an empty text sample (mov_text gaps) is a clear.
            return [] if self._bitmap else self._close(self._to_media(start))
        t0 = self._to_media(start + sset.start_display_time / 1000)
        end_ms = sset.end_display_time
        t1 = None
        if 0 < end_ms < UNKNOWN_END_MS and end_ms > sset.start_display_time:
            t1 = self._to_media(start + end_ms / 1000)
        try:
            text = None if self._bitmap else _plain_text(sset.rects)
            image = self._composite(sset) if self._bitmap else None
        except (ValueError, IndexError) as exc:  # a rect whose sizes do not fit its data
            self.errors += 1
            log.debug("track %d: unusable subtitle at %.3f s: %s", self.track, start, exc)
            return []
        if text is None and image is None:
            return self._close(t0)
        guess = self._to_media(start + float(packet.duration * tb)) if packet.duration else None
        ends_here = t1 is not None and not (self._bitmap and self._ctx.name in TIMEOUT_END_CODECS)
        if self._open is not None and _same(self._open, text, image):
            # The same caption again (broadcasters repeat display sets): it goes on, so do not cut it.
            self._open.cap, self._open.guess = (t1 if t1 is not None else self._open.cap), guess
            return self._close(t1) if ends_here else []
        out = self._close(t0)
        if not ends_here:
            self._open = _Open(t0, text, image, t1, guess)
        elif t1 > t0:
            out.append(SubtitleCue(t0, t1, text, image, self.track, self.language))
        return out

    def flush(self, end_t: float | None = None) -> list[SubtitleCue]:
        """At end of stream: close the open cue, at end_t (media seconds) if nothing says when it ends."""
        if end_t is not None and (not isinstance(end_t, numbers.Real) or not math.isfinite(end_t)):
            raise ValueError(f"end_t must be a finite number of media seconds or None, got {end_t!r}")
        if self._open is None:
            return []
        bounds = [b for b in (self._open.cap, self._open.guess, end_t) if b is not None and b > self._open.t0]
        return self._close(min(bounds) if bounds else self._open.t0 + DEFAULT_SECONDS)

    def _close(self, t: float) -> list[SubtitleCue]:
        opened, self._open = self._open, None
        if opened is None:
            return []
        end = min(t, opened.cap) if opened.cap is not None else t
        if end <= opened.t0:  # replaced at the instant it appeared: it was never on screen
            return []
        return [SubtitleCue(opened.t0, end, opened.text, opened.image, self.track, self.language)]

    def _composite(self, sset) -> np.ndarray | None:
        """Alpha-blend the set's bitmaps onto black; crop to the visible part plus a margin. None if blank."""
        layers = []
        for rect, palette in zip(sset.rects, _palettes(sset)):
            w, h = rect.width, rect.height
            if rect.type != b"bitmap" or w <= 0 or h <= 0 or not rect.planes:
                continue
            index = np.frombuffer(rect.planes[0], np.uint8)[: w * h].reshape(h, w)
            if palette is None:
                if not self._warned_palette:
                    log.warning("track %d: bitmap palette unreadable; cues drawn as white masks", self.track)
                    self._warned_palette = True
                # Most subtitle pixels are the transparent background; everything else is drawn white.
                alpha = (index != np.bincount(index.ravel()).argmax()).astype(np.float32)
                rgb = np.ones((h, w, 3), np.float32)
            else:
                rgba = palette[np.minimum(index, len(palette) - 1)]
                rgb, alpha = rgba[..., :3], rgba[..., 3]
            layers.append((rect.x, rect.y, rgb, alpha))
        if not layers:
            return None
        boxes = np.array([(x, y, x + a.shape[1], y + a.shape[0]) for x, y, _, a in layers])
        (x0, y0), (x1, y1) = boxes[:, :2].min(axis=0) - MARGIN, boxes[:, 2:].max(axis=0) + MARGIN
        canvas = np.zeros((y1 - y0, x1 - x0, 3), np.float32)
        seen = np.zeros(canvas.shape[:2], bool)
        for x, y, rgb, alpha in layers:
            region = (slice(y - y0, y - y0 + alpha.shape[0]), slice(x - x0, x - x0 + alpha.shape[1]))
            canvas[region] = canvas[region] * (1 - alpha[..., None]) + rgb * alpha[..., None]
            seen[region] |= alpha > 1 / 255
        rows, cols = np.flatnonzero(seen.any(axis=1)), np.flatnonzero(seen.any(axis=0))
        if rows.size == 0:  # only transparent pixels: nothing on screen, a clear
            return None
        top, left = max(rows[0] - MARGIN, 0), max(cols[0] - MARGIN, 0)
        crop = canvas[top: rows[-1] + MARGIN + 1, left: cols[-1] + MARGIN + 1]
        return np.ascontiguousarray(np.clip(crop * 255 + 0.5, 0, 255).astype(np.uint8))


def _same(opened: _Open, text: str | None, image: np.ndarray | None) -> bool:
    if text is not None:
        return opened.text == text
    return opened.image is not None and opened.image.shape == image.shape and np.array_equal(opened.image, image)


_ASS_TAG = re.compile(r"\{[^}]*\}")  # override blocks such as {\i1} or {\an8}
_HTML_TAG = re.compile(r"</?[a-zA-Z][^>]*>")  # <i>, <font ...> that some decoders pass through


def _plain_text(rects) -> str | None:
    lines = []
    for rect in rects:
        raw = {b"ass": rect.ass, b"text": rect.text}.get(rect.type, b"").decode("utf-8", "replace")
        if rect.type == b"ass":  # ReadOrder,Layer,Style,Name,MarginL,MarginR,MarginV,Effect,Text (old: "Dialogue: ")
            raw = raw.split(",", 9 if raw.startswith("Dialogue:") else 8)[-1]
        raw = _HTML_TAG.sub("", _ASS_TAG.sub("", raw))
        raw = raw.replace("\\N", "\n").replace("\\n", " ").replace("\\h", " ")
        lines += [" ".join(line.split()) for line in raw.splitlines()]
    text = "\n".join(line for line in lines if line)
    return text or None


# PyAV 18 hides each bitmap's palette: AVSubtitleRect.data[1] has linesize 0, so .planes leaves it out. Read it
# from the C structs, checking every field visible from Python first; another layout gives None, not a bad read.
_HEAD = object.__basicsize__  # PyObject header that precedes a Cython object's fields; ob_type ends it
_PTR = struct.calcsize("P")
_SET = struct.Struct("PP")  # SubtitleSet: proxy, rects
_AVSUB = struct.Struct("HxxIIIPq")  # AVSubtitle: format, start/end_display_time, num_rects, rects, pts
_RECT = struct.Struct("iiiiiPP")  # AVSubtitleRect: x, y, w, h, nb_colors, data[0], data[1]


def _palettes(sset) -> list[np.ndarray | None]:
    """Per rect: an nb_colors x 4 float32 RGBA palette in 0..1, or None."""
    rects, none = sset.rects, [None] * len(sset.rects)
    if type(sset).__basicsize__ < _HEAD + _SET.size:
        return none
    proxy, rects_id = _SET.unpack(ctypes.string_at(id(sset) + _HEAD, _SET.size))
    proxy_type = getattr(av.subtitles.subtitle, "SubtitleProxy", None)
    if rects_id != id(rects) or ctypes.c_void_p.from_address(proxy + _HEAD - _PTR).value != id(proxy_type):
        return none
    fmt, start, end, n, array, pts = _AVSUB.unpack(ctypes.string_at(proxy + _HEAD, _AVSUB.size))
    if not array or (fmt, start, end, n, pts) != (sset.format, sset.start_display_time, sset.end_display_time,
                                                  len(rects), sset.pts):
        return none
    out = []
    for ptr, rect in zip(struct.unpack(f"{n}P", ctypes.string_at(array, n * _PTR)), rects):
        palette = None
        if ptr and rect.type == b"bitmap" and rect.planes:
            x, y, w, h, colors, data0, data1 = _RECT.unpack(ctypes.string_at(ptr, _RECT.size))
            plane0 = np.frombuffer(rect.planes[0], np.uint8).ctypes.data
            if ((x, y, w, h, colors) == (rect.x, rect.y, rect.width, rect.height, rect.nb_colors)
                    and data0 == plane0 and data1 and 0 < colors <= 256):
                argb = np.frombuffer(ctypes.string_at(data1, 4 * colors), "=u4")  # native-endian 0xAARRGGBB
                palette = np.stack([argb >> 16, argb >> 8, argb, argb >> 24], axis=1) & 0xFF
                palette = palette.astype(np.float32) / 255
        out.append(palette)
    return out
