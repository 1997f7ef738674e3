"""How long a live source that has never connected keeps trying, and how it looks meanwhile.

A stream is often added before its broadcast starts. A listener (udp://, rtp://, srt:// in listener
mode) then waits for its sender, in state ``waiting``, for ``listen_wait`` seconds (None: until the
stream is stopped): one open after another, each an open timeout long, with no pause between them
(a pause would be a moment the port is closed and the sender's first packets are lost). A pull
source (rtsp, rtmp, http, HLS, srt caller, tcp) whose server is not up yet (refused, a timeout, a
playlist not published yet) tries again with backoff for ``connect_retry`` seconds, its last reason
in ``last_error``, and then fails with that reason.

What trying again cannot fix fails at the first attempt, as a recorded file does: a source the
policy refuses, a host that does not resolve, no such protocol, an answer that is not media, a
listener that cannot bind its port. A source that did connect once is another matter: its outages
are waited out by the reconnect loop (streaming/source/media.py), with gaps recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streaming.source.spec import NothingReceived, SourceError, SourceUnreachable


@dataclass
class FirstConnect:
    """The attempts before a live source's first connection. ``after_failure`` says how long to
    wait before the next one, or None to give up (with ``give_up`` as the reason)."""

    listener: bool
    listen_wait: float | None = 0.0  # None: no limit; 0: the first silent open fails
    connect_retry: float = 0.0  # 0: the first failed connect fails
    initial: float = 0.5  # first backoff delay of a pull source, doubling...
    max_delay: float = 30.0  # ...up to this
    started: float | None = None  # when the first attempt began (monotonic)
    attempts: int = 0
    retrying: bool = False  # an attempt failed and another one comes
    _delay: float = field(default=0.0, repr=False)

    def attempt(self, now: float) -> None:
        if self.started is None:
            self.started = now
            self._delay = self.initial
        self.attempts += 1

    @property
    def waiting(self) -> bool:
        """A listener past its first silent open: waiting for its sender, not failing."""
        return self.listener and self.retrying

    def after_failure(self, exc: SourceError, now: float) -> float | None:
        delay = self._next(exc, now)
        self.retrying = delay is not None
        return delay

    def _next(self, exc: SourceError, now: float) -> float | None:
        elapsed = now - (self.started if self.started is not None else now)
        if self.listener:
            if not isinstance(exc, NothingReceived):
                return None  # the port cannot be bound, the policy refuses it: no sender will fix that
            if self.listen_wait is not None and elapsed >= self.listen_wait:
                return None
            return 0.0
        if not isinstance(exc, SourceUnreachable) or elapsed + self._delay > self.connect_retry:
            return None
        delay, self._delay = self._delay, min(self._delay * 2, self.max_delay)
        return delay

    def give_up(self, exc: SourceError, now: float) -> SourceError:
        """The error to fail with: ``exc``, saying how long it was tried when it was."""
        elapsed = now - (self.started if self.started is not None else now)
        if self.attempts <= 1 or not isinstance(exc, SourceUnreachable):
            return exc
        if self.listener:
            return type(exc)(f"{exc.args[0].split(' within ')[0]} within {elapsed:.0f} s (listen_wait_s)")
        return type(exc)(f"{exc} (tried {self.attempts} times over {elapsed:.0f} s: connect_retry_s)")


def live_state(state: str, progress, last_error: str | None = None) -> tuple[str, str | None]:
    """The state and error a live stream's status shows, given what its source is doing
    (``SourceProgress``): ``waiting`` while a listener has no sender yet, ``connecting`` with the
    reason while a pull source retries its server, ``reconnecting`` with the reason in an outage."""
    if state == "connecting" and progress.waiting:
        return "waiting", None
    if state == "connecting" and progress.last_error:
        return state, progress.last_error
    if state == "ingesting" and not progress.connected:
        return "reconnecting", progress.last_error
    return state, last_error
