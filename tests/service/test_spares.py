"""Spare stream workers (actors/spares.py): a stream added, or restarted after its actor is killed,
starts in a process that already runs with the stream actor's code imported, and the keeper makes
up for the spares used. Real Ray, real Serve, the session's service (spare_stream_workers = 2)."""

from __future__ import annotations

import time

import pytest

from actors.spares import Starting, to_start
from tests.support.helpers import media


def _preloaded_at(service, sid: str) -> float | None:
    import ray

    from actors.stream_actor import actor_name

    def when(self):
        from actors import spares

        return spares.PRELOADED_AT

    handle = ray.get_actor(actor_name(sid), namespace=service.settings.namespace)
    deadline = time.monotonic() + 60
    while True:
        try:
            return ray.get(handle.__ray_call__.remote(when), timeout=30)
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
            assert time.monotonic() < deadline, "the stream actor did not come back"
            time.sleep(0.1)


def _wait_for_spares(target: int, timeout: float = 120.0) -> dict:
    from actors.spares import idle_per_node

    deadline = time.monotonic() + timeout
    while True:
        idle = idle_per_node()
        if all(n >= target for n in idle.values()):
            return idle
        assert time.monotonic() < deadline, f"spares not back to {target} per node: {idle}"
        time.sleep(0.5)


@pytest.mark.slow
def test_a_new_stream_and_a_restarted_one_start_in_spare_processes_that_are_then_replaced(service):
    import ray

    from actors.stream_actor import actor_name

    target = service.settings.spare_stream_workers
    assert target >= 1
    _wait_for_spares(target)

    posted = time.time()
    sid = service.add(str(media("jfk_inaugural_1961.flac")), name="spare-new")
    at = _preloaded_at(service, sid)
    # Its process had imported the stream actor's code before the stream existed: nothing of its
    # start waited for a process or for imports.
    assert at is not None and at < posted, (at, posted)
    service.wait(sid, states=("ingesting", "finished"), timeout=60)
    _wait_for_spares(target)  # the one it took is replaced

    killed = time.time()
    ray.kill(ray.get_actor(actor_name(sid), namespace=service.settings.namespace), no_restart=False)
    at = _preloaded_at(service, sid)
    assert at is not None and at < killed, (at, killed)  # Ray restarted it in a spare too
    status = service.wait(sid, timeout=120)
    assert status["state"] == "finished" and "restarted after a crash" in status["notes"], status
    assert status["segments"] > 0
    _wait_for_spares(target)


def test_the_keeper_starts_what_is_missing_one_at_a_time_and_does_not_count_a_spare_twice():
    assert to_start(4, idle=0, pending=0) == 1  # one at a time: a refill takes at most a core
    assert to_start(4, idle=4, pending=0) == 0
    assert to_start(4, idle=6, pending=0) == 0
    starting = Starting()
    starting.ask(1, idle=set(), now=0.0)
    # Not registered yet: on its way, nothing more to start.
    assert starting.pending(set(), now=1.0) == 1
    assert to_start(4, idle=0, pending=starting.pending(set(), now=1.0)) == 0
    # Registered: the next one is started.
    assert starting.pending({b"a"}, now=2.0) == 0
    assert to_start(4, idle=1, pending=starting.pending({b"a"}, now=2.0)) == 1
    starting.ask(1, idle={b"a"}, now=2.0)
    # It registered, and a stream took the older one in between: nothing is counted twice.
    assert starting.pending({b"b"}, now=3.0) == 0
    # A spare that never registers is given up after a while and asked for again.
    late = Starting()
    late.ask(1, idle={b"x"}, now=0.0)
    assert late.pending({b"x"}, now=5.0) == 1
    assert late.pending({b"x"}, now=60.0) == 0
    assert to_start(4, idle=1, pending=late.pending({b"x"}, now=60.0)) == 1
