"""Where a source may lead the service: the guard against server-side request forgery.

Anyone who can add a stream can make the service connect somewhere, and read back what it found
(transcripts, on-screen text, a source's error). So before every open (the first one and every
reconnect, since a name can resolve elsewhere later) a source is checked here:

- its host is resolved and every address it resolves to must be a public one, unless the operator
  allow-listed it (``source_allow``: networks or host names). Loopback is allowed while the API
  itself is reachable only from this machine, so local trials keep working;
- listeners (UDP, RTP, SRT ``mode=listener``) take no destination: their address must be one of
  this machine's, or a multicast group, since a bind is all they do;
- only the URL options a source needs pass to FFmpeg (``?listen=1`` on tcp would open a port,
  ``localport`` binds a chosen one, ...), and each scheme gets FFmpeg's ``protocol_whitelist``, so a
  playlist cannot send FFmpeg to ``file:`` or another protocol;
- files must lie under ``media_roots`` once the service is reachable from elsewhere, and every
  refused or unreadable path gets the same answer, so the API cannot be used to map the disk.

What this cannot see: the hosts an HLS playlist names for its segments are fetched by FFmpeg
itself, and FFmpeg resolves a name again when it connects. Both are the operator's to bound with
network egress rules when the API is exposed (README, "Security").
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlparse

from streaming.source.media import SourceError, SourceSpec, parse_source
from streaming.source.spec import is_listener

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str], list[str]]

# FFmpeg protocols each scheme may use, nested ones included (an HLS playlist opens its segments
# through the same whitelist, so ``file:`` or ``concat:`` in a playlist is refused by FFmpeg).
PROTOCOLS = {
    "file": "file",
    "http": "http,https,tcp,tls,crypto,httpproxy",
    "https": "http,https,tcp,tls,crypto,httpproxy",
    "udp": "udp",
    "rtp": "rtp,udp",
    "tcp": "tcp",
    "rtmp": "rtmp,tcp",
    "rtmps": "rtmps,rtmp,tcp,tls",
    "rtsp": "rtsp,rtp,udp,tcp",
    "rtsps": "rtsps,rtsp,rtp,udp,tcp,tls",
    "srt": "srt",
}
# URL query options FFmpeg reads for these protocols that a source may carry. Everything else is
# refused: the dangerous ones open or choose local ports (tcp listen, udp localport, connect).
SAFE_OPTIONS = {
    "udp": {"fifo_size", "overrun_nonfatal", "buffer_size", "timeout", "pkt_size", "reuse", "sources",
            "block", "localaddr"},
    "rtp": {"fifo_size", "overrun_nonfatal", "buffer_size", "timeout", "pkt_size", "reuse", "sources",
            "block", "localaddr"},
    "tcp": {"timeout", "tcp_nodelay", "recv_buffer_size"},
    "srt": {"mode", "latency", "rcvlatency", "peerlatency", "passphrase", "pbkeylen", "streamid",
            "timeout", "connect_timeout", "rw_timeout", "transtype", "payload_size", "tlpktdrop",
            "nakreport", "maxbw", "enforced_encryption", "kmrefreshrate", "kmpreannounce"},
}
GENERIC_FILE_REFUSAL = "source refused: not a readable media file under the configured media_roots"


class SourceRefused(SourceError):
    """The source policy refuses this source; the message says why and which setting allows it."""


def resolve(host: str) -> list[str]:
    """Every address ``host`` resolves to (a literal address resolves to itself)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise SourceError(f"cannot resolve host '{host}'") from None
    return sorted({info[4][0] for info in infos})


def _address(text: str) -> Address:
    addr = ipaddress.ip_address(text.split("%")[0])  # drop an IPv6 zone
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return addr.ipv4_mapped  # ::ffff:169.254.169.254 is the metadata address all the same
    return addr


def _kind(addr: Address) -> str | None:
    """Why ``addr`` is not a public destination, or None when it is."""
    if addr.is_loopback:
        return "a loopback address"
    if addr.is_link_local:
        return "a link-local address (cloud metadata lives there)"
    if addr.is_multicast:
        return "a multicast address"
    if addr.is_unspecified or addr.is_reserved:
        return "not a routable address"
    if not addr.is_global:
        return "a private address"
    return None


def is_local_address(addr: Address) -> bool:
    """True when ``addr`` belongs to this machine (it can be bound)."""
    if addr.is_loopback or addr.is_unspecified:
        return True
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.bind((str(addr), 0))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class SourcePolicy:
    """What sources may reach. ``loopback_ok``: the API listens on loopback only, so whoever adds a
    source is already on this machine. ``media_roots`` None: any readable file."""

    allow: tuple[str, ...] = ()
    loopback_ok: bool = True
    media_roots: tuple[Path, ...] | None = None
    resolver: Resolver = resolve

    @classmethod
    def from_settings(cls, settings, resolver: Resolver = resolve) -> "SourcePolicy":
        exposed = not settings.loopback_only
        roots = tuple(Path(r).expanduser().resolve() for r in settings.media_roots)
        return cls(allow=tuple(settings.source_allow), loopback_ok=not exposed,
                   media_roots=roots if roots or exposed else None, resolver=resolver)

    def __call__(self, spec: SourceSpec) -> dict[str, str]:
        """Check ``spec`` (SourceError if refused); the FFmpeg options that bound its open."""
        self.check(spec)
        return opener_options(spec)

    def parse(self, text: str) -> SourceSpec:
        """``parse_source`` then ``check``: a user's source as the spec to open, or SourceError.
        With media roots, a path outside them gets the generic answer before anything else."""
        try:
            spec = parse_source(text)
        except SourceRefused:
            raise
        except SourceError:
            if self.media_roots is not None and (not isinstance(text, str) or "://" not in text
                                                 or text.strip().lower().startswith("file:")):
                raise SourceRefused(GENERIC_FILE_REFUSAL) from None
            raise
        self.check(spec)
        return spec

    def check(self, spec: SourceSpec) -> None:
        """Raise SourceRefused (or SourceError) when ``spec`` may not be opened."""
        if spec.scheme == "file":
            self._check_file(spec.uri)
            return
        parsed = urlparse(spec.uri)
        self._check_options(spec.scheme, parsed.query)
        host = parsed.hostname or ""
        if is_listener(spec):
            self._check_listener(spec.scheme, host)
        else:
            self._check_destination(host)

    # -- destinations ---------------------------------------------------------------------------

    def _allowed(self, host: str, addr: Address) -> bool:
        for entry in self.allow:
            if entry.lower() == host.lower():
                return True
            try:
                if addr in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue  # a host name entry
        return False

    def check_url(self, url: str, schemes: tuple[str, ...] = ("http", "https")) -> list[str]:
        """Check a URL the service itself will request (a webhook): one of ``schemes``, a host, and
        every address the host resolves to allowed as a source destination would be. The allowed
        addresses come back, so the caller connects to exactly those (a second lookup could answer
        differently). SourceRefused when refused, SourceError when the host does not resolve."""
        try:
            parsed = urlparse(url)
            parsed.port  # noqa: B018 - raises ValueError on a port that is not a number
        except (TypeError, ValueError):
            raise SourceRefused("URL refused: not a valid URL") from None
        if parsed.scheme.lower() not in schemes:
            raise SourceRefused(f"URL refused: only {', '.join(s + '://' for s in schemes)} URLs are allowed")
        if not parsed.hostname:
            raise SourceRefused("URL refused: it names no host")
        return self._check_destination(parsed.hostname)

    def _check_destination(self, host: str) -> list[str]:
        """The addresses ``host`` resolves to, when every one is allowed (else SourceRefused)."""
        addresses = self.resolver(host)
        for text in addresses:
            addr = _address(text)
            why = _kind(addr)
            if why is None or self._allowed(host, addr):
                continue
            if addr.is_loopback and self.loopback_ok:
                continue
            shown = host if host == str(addr) else f"{host} ({addr})"
            raise SourceRefused(f"source refused: {shown} is {why}; an operator can allow it with the "
                                f"source_allow setting (a network such as {addr}/{addr.max_prefixlen}, "
                                "or the host name)")
        return addresses

    def _check_listener(self, scheme: str, host: str) -> None:
        """A listener binds ``host`` (this machine) or joins it (a multicast group)."""
        for text in self.resolver(host) if host else ["0.0.0.0"]:
            addr = _address(text)
            if addr.is_multicast or self._allowed(host, addr):
                continue
            # Receiving on loopback reaches nothing (it only hears local senders): fine even when exposed.
            if not is_local_address(addr):
                raise SourceRefused(f"source refused: a {scheme}:// listener receives on an address of "
                                    f"this machine or a multicast group; {host} is neither")

    @staticmethod
    def _check_options(scheme: str, query: str) -> None:
        if scheme not in SAFE_OPTIONS or not query:
            return
        try:
            keys = {k for k, _ in parse_qsl(query, keep_blank_values=True, strict_parsing=True)}
        except ValueError:
            raise SourceRefused(f"source refused: cannot read the options of this {scheme}:// URL") from None
        bad = sorted(keys - SAFE_OPTIONS[scheme])
        if bad:
            raise SourceRefused(f"source refused: {scheme}:// option(s) {', '.join(bad)} are not allowed "
                                f"(allowed: {', '.join(sorted(SAFE_OPTIONS[scheme]))})")

    # -- files ----------------------------------------------------------------------------------

    def _check_file(self, uri: str) -> None:
        if self.media_roots is None:
            return  # parse_source already said if it is missing or unreadable
        path = Path(uri).resolve()
        if not any(path.is_relative_to(root) for root in self.media_roots) or not _readable(path):
            # One answer for missing, unreadable and outside the roots: the API is no oracle.
            raise SourceRefused(GENERIC_FILE_REFUSAL)


def _readable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.R_OK)


def opener_options(spec: SourceSpec) -> dict[str, str]:
    """FFmpeg options that bound what opening ``spec`` may reach."""
    protocols = PROTOCOLS.get(spec.scheme)
    return {"protocol_whitelist": protocols} if protocols else {}
