"""One model, many streams: requests from every stream are gathered into batches for one model call.

A live stream asks a model for little (Whisper: ~0.2 encoder windows and ~3 decode tokens a second), but
a GPU does the same work for 128 requests in about the time it takes for one. So the shared model
services put every stream's requests through a ``MicroBatcher``: a worker thread takes the waiting
requests, up to ``max_batch``, waiting at most ``max_wait_s`` after the first for more to arrive, and
runs the model once on all of them.

Fairness is decided here, not by arrival order:
- live and real-time-paced streams (``priority`` 0) are served before files read as fast as the
  model allows (``priority`` 1), so a 2-hour recording added to a busy box cannot starve live streams;
- each stream has at most ``max_in_flight`` requests waiting (``submit`` blocks past that, which is
  the backpressure its reader queue and the governor already know how to absorb).

The same code runs in a plain process (tests, benchmarks, a GPU measured without Ray) and inside a
Ray Serve replica; ``stats`` feeds the Prometheus metrics and the benchmarks (batch sizes and queue
waits). Ray Serve places and scales the replicas; what a batch is, and who goes first, stays here.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

from streaming.interfaces import StaleRequest

log = logging.getLogger("manta.batcher")

T = TypeVar("T")
R = TypeVar("R")

LIVE, FILE = 0, 1  # priorities: lower is served first
WAITS_KEPT = 4096  # recent queue waits kept for percentiles (a sliding window, not the whole history)


class BatcherClosed(RuntimeError):
    """The service stopped (or its model failed to load): nothing more will be answered."""


class Stale(StaleRequest):
    """A request of a service that drops old work (provisional text) waited past ``stale_s``: its
    answer would come too late to matter, so the model is not run for it."""


@dataclass(frozen=True, slots=True)
class BatchStats:
    """What a service did so far; waits are over the most recent ``WAITS_KEPT`` requests."""

    name: str
    batches: int
    items: int
    mean_batch: float
    max_batch_seen: int
    wait_p50_s: float
    wait_p95_s: float
    wait_max_s: float
    busy_s: float  # time spent inside the model
    queued: int  # waiting now
    stale: int = 0  # requests dropped unanswered for waiting past stale_s

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(slots=True)
class _Request:
    item: object
    key: str
    submitted: float
    future: Future


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class MicroBatcher(Generic[T, R]):
    """``fn`` takes a list of items and returns one result per item, in order."""

    def __init__(self, fn: Callable[[list[T]], Sequence[R]], *, max_batch: int = 16, max_wait_s: float = 0.01,
                 max_in_flight: int = 4, name: str = "model", clock: Callable[[], float] = time.monotonic,
                 stale_s: float | None = None):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if max_wait_s < 0:
            raise ValueError("max_wait_s must not be negative")
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.fn, self.name, self.clock = fn, name, clock
        self.stale_s = stale_s  # None: every request is answered however long it waited
        self._stale = 0
        self.max_batch, self.max_wait_s, self.max_in_flight = max_batch, max_wait_s, max_in_flight
        self._heap: list[tuple[int, int, _Request]] = []
        self._seq = itertools.count()
        self._in_flight: dict[str, int] = {}
        self._cond = threading.Condition()
        self._closed: BaseException | None = None
        self._waits: deque[float] = deque(maxlen=WAITS_KEPT)
        self._batches = self._items = self._largest = 0
        self._busy = 0.0
        self._worker = threading.Thread(target=self._run, name=f"manta-batch-{name}", daemon=True)
        self._worker.start()

    # -- callers -----------------------------------------------------------------------------------
    def submit(self, item: T, key: str = "", priority: int = LIVE, timeout: float | None = None) -> Future:
        """Queue one item; the Future holds its result. Blocks while ``key`` (a stream) already has
        ``max_in_flight`` items waiting or running, up to ``timeout`` (then TimeoutError)."""
        deadline = None if timeout is None else self.clock() + timeout
        with self._cond:
            while self._in_flight.get(key, 0) >= self.max_in_flight and self._closed is None:
                left = None if deadline is None else deadline - self.clock()
                if left is not None and left <= 0:
                    raise TimeoutError(f"{self.name}: stream {key!r} has {self.max_in_flight} requests in flight")
                self._cond.wait(left)
            if self._closed is not None:
                raise BatcherClosed(f"{self.name} is not serving: {self._closed}") from self._closed
            req = _Request(item, key, self.clock(), Future())
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
            heapq.heappush(self._heap, (priority, next(self._seq), req))
            self._cond.notify_all()
        return req.future

    def __call__(self, item: T, key: str = "", priority: int = LIVE, timeout: float | None = None) -> R:
        return self.submit(item, key, priority, timeout).result(timeout)

    def stats(self) -> BatchStats:
        with self._cond:
            waits = list(self._waits)
            return BatchStats(self.name, self._batches, self._items,
                              self._items / self._batches if self._batches else 0.0, self._largest,
                              percentile(waits, 0.5), percentile(waits, 0.95), max(waits, default=0.0),
                              self._busy, len(self._heap), self._stale)

    def close(self, reason: BaseException | None = None) -> None:
        """Stop serving: waiting requests fail with ``BatcherClosed``; a running batch finishes."""
        with self._cond:
            self._closed = reason or BatcherClosed(f"{self.name} closed")
            pending = [req for _, _, req in self._heap]
            self._heap.clear()
            self._cond.notify_all()
        for req in pending:
            self._done(req)
            req.future.set_exception(BatcherClosed(f"{self.name} closed before answering"))
        self._worker.join(timeout=5)

    # -- the worker --------------------------------------------------------------------------------
    def _take(self) -> list[_Request] | None:
        """The next batch: wait for a first request, then up to ``max_wait_s`` for more (a full
        batch goes at once). Higher priorities leave first, so files only fill what live leaves."""
        with self._cond:
            while not self._heap and self._closed is None:
                self._cond.wait()
            if self._closed is not None:
                return None
            first_at = self._heap[0][2].submitted
            while len(self._heap) < self.max_batch and self._closed is None:
                left = first_at + self.max_wait_s - self.clock()
                if left <= 0:
                    break
                self._cond.wait(left)
            now = self.clock()
            batch = []
            while self._heap and len(batch) < self.max_batch:
                req = heapq.heappop(self._heap)[2]
                if self.stale_s is not None and now - req.submitted > self.stale_s:
                    self._stale += 1
                    self._done_locked(req)
                    req.future.set_exception(Stale(f"{self.name}: waited {now - req.submitted:.1f} s, "
                                                   f"past {self.stale_s:g} s"))
                    continue
                batch.append(req)
            self._waits.extend(now - r.submitted for r in batch)
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            if not batch:  # every request waiting was stale
                continue
            t = time.perf_counter()
            try:
                results = list(self.fn([r.item for r in batch]))
                if len(results) != len(batch):
                    raise RuntimeError(f"{self.name} returned {len(results)} results for {len(batch)} items")
            except Exception as exc:  # noqa: BLE001 - every caller of the batch gets the model's error
                log.warning("%s failed a batch of %d: %s: %s", self.name, len(batch), type(exc).__name__, exc)
                results = None
                error = exc
            busy = time.perf_counter() - t
            with self._cond:
                self._batches += 1
                self._items += len(batch)
                self._largest = max(self._largest, len(batch))
                self._busy += busy
            for i, req in enumerate(batch):
                self._done(req)
                if results is None:
                    req.future.set_exception(error)
                else:
                    req.future.set_result(results[i])

    def _done(self, req: _Request) -> None:
        with self._cond:
            self._done_locked(req)

    def _done_locked(self, req: _Request) -> None:
        n = self._in_flight.get(req.key, 1) - 1
        if n <= 0:
            self._in_flight.pop(req.key, None)
        else:
            self._in_flight[req.key] = n
        self._cond.notify_all()
