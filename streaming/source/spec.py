"""What a user's source is: a path or URL checked and classified (live or recorded), and the errors
that say, in words meant for the user, why a source cannot be used or could not be reached."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlparse

from streaming.source.redact import redact_uri

LIVE_SCHEMES = ("udp", "rtp", "tcp", "http", "https", "rtmp", "rtmps", "rtsp", "rtsps", "srt")
# Sources that bind a local address and wait for a sender, rather than connect to a server.
LISTENER_SCHEMES = ("udp", "rtp")
RECORDED_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".wav", ".flac", ".mp3", ".ogg", ".m4a",
                     ".aac", ".opus")


class SourceError(ValueError):
    """A source that cannot be used; the message is meant for the user."""


class SourceUnreachable(SourceError):
    """The source did not answer this time (refused, a timeout, a server error, a playlist not
    published yet): a live source may try again. Other SourceErrors (no such protocol, not media,
    refused by the source policy, a host that does not resolve) would fail the same way again."""


class NothingReceived(SourceUnreachable):
    """The open timed out with nothing received: for a listener, no sender yet."""


@dataclass(frozen=True, slots=True)
class SourceSpec:
    uri: str  # what PyAV opens
    live: bool
    scheme: str  # "file" for local paths

    @property
    def display(self) -> str:
        """The URI as it may be shown (status, errors, logs): credentials masked (redact.py)."""
        return redact_uri(self.uri)


def parse_source(text: str) -> SourceSpec:
    """Validate a user-given path or URL and say whether it is live."""
    if not isinstance(text, str) or not text.strip():
        raise SourceError("source must be a non-empty path or URL")
    text = text.strip()
    if "://" not in text:
        return _file_spec(text)
    scheme = text.split("://", 1)[0].lower()
    if scheme == "file":
        return _file_spec(unquote(urlparse(text).path))
    if scheme not in LIVE_SCHEMES:
        raise SourceError(f"unsupported scheme '{scheme}://'; use a file path, file://, or one of "
                          + ", ".join(s + "://" for s in LIVE_SCHEMES))
    parsed = urlparse(text)
    if not parsed.hostname:
        raise SourceError(f"'{redact_uri(text)}' has no host")
    # A plain HTTP file download is recorded media, not a broadcast: do not reconnect at its end.
    live = not (scheme in ("http", "https") and parsed.path.lower().endswith(RECORDED_SUFFIXES))
    return SourceSpec(uri=text, live=live, scheme=scheme)


def _file_spec(path_text: str) -> SourceSpec:
    try:
        path = Path(path_text).expanduser()
        exists = path.exists()
    except (RuntimeError, OSError, ValueError):
        # "~name" of no user (RuntimeError), a name longer than the file system allows (OSError): a
        # path that cannot exist, answered like any other missing file, not as a server error.
        raise SourceError(f"no such file: {path_text}") from None
    if not exists:
        raise SourceError(f"no such file: {path}")
    if not path.is_file():
        raise SourceError(f"not a regular file: {path}")
    if not os.access(path, os.R_OK):
        raise SourceError(f"file is not readable: {path}")
    return SourceSpec(uri=str(path.resolve()), live=False, scheme="file")


def is_listener(spec: SourceSpec) -> bool:
    """True when opening ``spec`` binds a local address and waits for a sender (UDP, RTP, SRT in
    listener mode) rather than connecting to a server."""
    if spec.scheme in LISTENER_SCHEMES:
        return True
    return spec.scheme == "srt" and dict(parse_qsl(urlparse(spec.uri).query)).get("mode") == "listener"
