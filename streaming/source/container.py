"""Opening a source's container with PyAV: bounded waits, the options each protocol needs, and a
reason a user can read for every way it can fail (never FFmpeg's raw message with a URL's secret).

Reading it (demux, decode, reconnect) is streaming/source/media.py.
"""

from __future__ import annotations

import av

from streaming.source.redact import redact_text
from streaming.source.relay import RELAYED_SCHEMES, ProtocolMissing, RelayTimeout, open_relay, pyav_has_protocol
from streaming.source.spec import NothingReceived, SourceError, SourceSpec, SourceUnreachable

# PyAV's bridge from FFmpeg's log to Python logging takes a lock per message from every decoder
# thread: it contends under threads and can deadlock (PyAV issues 751, 2276). FFmpeg's own messages
# are not needed: errors still raise with their reason.
av.logging.set_level(None)

# At the live edge of an HLS playlist a read waits for the next segment, up to the target duration
# (Apple recommends 6 s, some servers use 10) and half that again if it is late. A read timeout
# shorter than that ends FFmpeg's HLS demuxer as if the playlist had finished.
HLS_READ_TIMEOUT_S = 20.0
# ffmpeg will happily "decode" plain text as ANSI art (tty demuxer); that is never what a user meant.
NOT_MEDIA_FORMATS = {"tty", "ffmetadata", "srt", "webvtt", "ass", "subviewer", "microdvd"}

# HTTP answers that trying again does not change (a 404 may: a playlist not published yet).
REFUSALS = (av.error.HTTPBadRequestError, av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError)


def _open_options(spec: SourceSpec) -> dict[str, str]:
    opts = {}
    if spec.live:
        # Start quickly: ffmpeg's default 5 s probe would be 5 s of extra latency on every connect.
        opts.update(analyzeduration="1000000", probesize="1000000")
    if spec.scheme == "udp":
        opts.update(overrun_nonfatal="1", fifo_size="278876")  # ~50 MB of 188-byte TS packets
    elif spec.scheme in ("rtsp", "rtsps"):
        opts["rtsp_transport"] = "tcp"
    elif spec.scheme == "srt":
        opts["mode"] = "listener" if "mode=listener" in spec.uri else "caller"
    return opts


def open_container(spec: SourceSpec, open_timeout: float, read_timeout: float,
                   options: dict[str, str] | None = None):
    """Open with bounded waits; raise SourceError with a readable reason. ``options``: more FFmpeg
    options (the source policy's protocol whitelist)."""
    if spec.uri.lower().split("?")[0].endswith(".m3u8"):
        read_timeout = max(read_timeout, HLS_READ_TIMEOUT_S)
    try:
        if spec.live and spec.scheme in RELAYED_SCHEMES and not pyav_has_protocol(spec.scheme):
            container = open_relay(spec.uri, spec.scheme, open_timeout, read_timeout)  # srt://: relay.py
        else:
            container = av.open(spec.uri, options=_open_options(spec) | (options or {}),
                                timeout=(open_timeout, read_timeout))
    except (av.error.ExitError, RelayTimeout):
        raise NothingReceived(f"nothing received from {spec.display} within {open_timeout:g} s") from None
    except (av.error.ProtocolNotFoundError, ProtocolMissing):
        # PyAV's wheels ship an FFmpeg without libsrt, for one: say so rather than "Protocol not found".
        raise SourceError(f"cannot open {spec.display}: this FFmpeg build (PyAV {av.__version__}) has no "
                          f"{spec.scheme}:// protocol, nor has an ffmpeg binary on PATH; install one "
                          f"that has (Debian's: apt-get install ffmpeg)") from None
    except (av.error.InvalidDataError, *REFUSALS) as exc:  # it answered: not media, or not for us
        raise SourceError(f"cannot open {spec.display}: {reason(exc)}") from None
    except av.error.FFmpegError as exc:
        raise SourceUnreachable(f"cannot open {spec.display}: {reason(exc)}") from None
    except OSError as exc:
        raise SourceUnreachable(f"cannot open {spec.display}: {exc.strerror or exc}") from None
    fmt = container.format.name.split(",")[0] if container.format else ""
    if fmt in NOT_MEDIA_FORMATS or not (container.streams.audio or container.streams.video):
        container.close()
        raise SourceError(f"not a media file: {spec.display} (no audio or video stream found)")
    return container


def is_playlist(spec: SourceSpec) -> bool:
    return spec.uri.lower().split("?")[0].endswith(".m3u8")


def reason(exc: Exception) -> str:
    msg = getattr(exc, "strerror", None) or str(exc)
    # FFmpeg's messages may quote the URL it was given, credentials included.
    return redact_text(msg.split(":")[0] if "Errno" in msg and ":" in msg else msg)
