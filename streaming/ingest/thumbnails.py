"""Small JPEG pictures of a stream, for the dashboard's timeline and citations.

A recorded file can be decoded again at any time (``still_at``), so it keeps nothing. A live source
cannot be rewound: its pipeline keeps the recent sampled frames as thumbnails in a ``ThumbnailRing``
(bounded by age and count), and a citation of a live stream shows the nearest of those.
"""

from __future__ import annotations

import bisect
import io
import math
import threading
from collections import deque

import numpy as np

WIDTH = 320  # px: enough to recognise a scene in a timeline, ~10-20 KB per JPEG
QUALITY = 75
KEEP_S = 600.0  # media seconds of a live stream's thumbnails kept (10 minutes)
EVERY_S = 1.0  # at most one thumbnail per media second: frame_fps above 1 buys the timeline nothing
MAX_ITEMS = 1200  # a hard bound whatever the timestamps do (a reconnect storm, a tiny EVERY_S)
MAX_DECODED_FRAMES = 600  # still_at gives up past this many frames after a seek (a broken index)


def encode_jpeg(image: np.ndarray, width: int = WIDTH) -> bytes:
    """An H x W x 3 uint8 RGB picture as a JPEG at most ``width`` px wide (aspect kept)."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(image[..., :3]), "RGB")
    if img.width > width:
        # reducing_gap: a cheap integer reduce first, then the filter: a 1080p frame took 19 ms, now
        # 10 (the live worker pays it once per second).
        img = img.resize((width, max(1, round(img.height * width / img.width))), Image.BILINEAR, reducing_gap=2.0)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


class ThumbnailRing:
    """The last ``keep_s`` media seconds of thumbnails, oldest first; ``keep_s`` 0 keeps none (a
    recorded file, which ``still_at`` reads instead). The pipeline's worker adds, API calls read:
    a lock keeps the two lists in step."""

    def __init__(self, keep_s: float = KEEP_S, every_s: float = EVERY_S, max_items: int = MAX_ITEMS):
        if not (keep_s >= 0 and every_s >= 0 and max_items >= 1):
            raise ValueError("keep_s and every_s must be >= 0 and max_items >= 1")
        self.keep_s, self.every_s = keep_s, every_s
        self._times: deque[float] = deque(maxlen=max_items)
        self._jpegs: deque[bytes] = deque(maxlen=max_items)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._times)

    def add(self, t: float, image: np.ndarray) -> bool:
        """Keep a thumbnail of the frame at media time ``t``; False when it is not kept (disabled,
        too soon after the last one, or time went backwards)."""
        if self.keep_s == 0 or not math.isfinite(t):
            return False
        last = self._times[-1] if self._times else None
        if last is not None and t < last + self.every_s:
            return False
        jpeg = encode_jpeg(image)  # outside the lock: a reader never waits for an encode
        with self._lock:
            self._times.append(t)
            self._jpegs.append(jpeg)
            while self._times and self._times[0] < t - self.keep_s:
                self._times.popleft()
                self._jpegs.popleft()
        return True

    def nearest(self, at: float) -> tuple[float, bytes] | None:
        """The kept thumbnail closest to ``at`` (media seconds) and its time; None when none is kept."""
        with self._lock:
            if not self._times:
                return None
            times = list(self._times)
            i = bisect.bisect_left(times, at)
            best = min((j for j in (i - 1, i) if 0 <= j < len(times)), key=lambda j: abs(times[j] - at))
            return times[best], self._jpegs[best]

    def span(self) -> tuple[float, float] | None:
        """(oldest, newest) kept time, or None."""
        with self._lock:
            return (self._times[0], self._times[-1]) if self._times else None


def still_at(path: str, at: float, width: int = WIDTH) -> tuple[float, bytes] | None:
    """The frame shown at ``at`` seconds of a recorded file, as (its time, JPEG); None when the file
    has no video track. A time past the end gives the last frame. Raises av.FFmpegError (or
    OSError) on an unreadable file."""
    import av

    with av.open(path) as container:
        video = next((s for s in container.streams if s.type == "video"), None)
        if video is None:
            return None
        video.thread_type = "AUTO"
        base = video.time_base
        start = float(video.start_time * base) if video.start_time is not None else 0.0
        target = start + at
        if base is not None and at > 0:
            # Seeks to the keyframe at or before the target; the frames up to it are decoded.
            container.seek(int(target / base), stream=video, backward=True, any_frame=False)
        best = None
        for n, frame in enumerate(container.decode(video)):
            t = float(frame.pts * base) if frame.pts is not None and base is not None else target
            if best is not None and t > target:
                break  # the previous frame was the one on screen at the target
            best = (t - start, frame)
            if t >= target or n >= MAX_DECODED_FRAMES:
                break
        if best is None:
            return None
        t, frame = best
        return max(0.0, t), encode_jpeg(frame.to_ndarray(format="rgb24"), width)
