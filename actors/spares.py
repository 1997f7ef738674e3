"""Warm spare processes for stream actors: a stream that is added, or that Ray restarts after a
crash, starts in a process that is already running with the stream actor's code imported.

Without spares Ray starts a new Python worker for each actor (~0.5 s on an idle box, several seconds
on a busy one) and the stream actor's imports take ~1 s more, before the stream reads anything. Ray
can start idle workers ahead of need (its raylet's ``PrestartWorkers``) and imports the modules named
in its ``preload_python_modules`` setting into every worker it starts. So:
- ``start_ray`` names this module in ``preload_python_modules``: every Ray worker imports it, and it
  imports the stream actor's code only in a worker started for stream actors (``WORKER_ENV``), so
  the API, the model services and Serve's own processes pay nothing for it;
- stream actors are created with ``RUNTIME_ENV``, and Ray gives an actor only a worker started with
  its runtime env: a spare, when one is idle;
- ``SpareKeeper`` (a thread in each API replica) keeps ``spare_stream_workers`` such workers idle on
  every node, counting them in the raylet's worker stats, and starts new ones as streams use them.

A cluster started without the preload setting still gets spares: already-started processes, whose
imports then happen when the actor arrives. Everything here uses Ray internals (raylet gRPC); if
they fail, streams start as before, in processes Ray starts for them, and the keeper says so once.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time

WORKER_ENV = "MANTA_WORKER"
STREAM_WORKER = "stream"
RUNTIME_ENV = {"env_vars": {WORKER_ENV: STREAM_WORKER}}
PRELOAD = __name__  # what start_ray names in Ray's preload_python_modules

PRELOADED_AT: float | None = None  # wall time this process had the stream actor's code imported
if os.environ.get(WORKER_ENV) == STREAM_WORKER:  # a spare for stream actors: import its code now
    importlib.import_module("actors.stream_actor")
    PRELOADED_AT = time.time()

log = logging.getLogger("manta.spares")

CHECK_EVERY_S = 5.0
RPC_TIMEOUT_S = 3.0
# A prestarted worker registers with its raylet once its imports are done (1-2 s, more when busy);
# until then it is not in the worker stats, and counting it as missing would start it twice.
STARTING_S = 20.0
# Ray kills idle workers beyond its soft limit (the node's CPU count) once this has passed since
# they were started; the keeper then starts new ones. Long, so spares are rarely replaced.
KEEP_ALIVE_S = 3600
# Refill this long after the last stream was added, not while new streams start: a spare's start
# costs about a second of CPU, which new streams need more on a small box. Measured on 2 cores, 4
# streams added together: first segments 9.5 s (mean 8.0 s) with the refill held back, 16.8 s
# (14.4 s) with it 3 s after the adds, 12.0 s (11.0 s) without spares.
SETTLE_S = 10.0
# Spares started at once on a node: one at a time, the next once it has registered, so refilling
# never takes more than about one core from the streams.
AT_ONCE = 1


def _channel(node: dict):
    from ray._private.grpc_utils import init_grpc_channel

    return init_grpc_channel(f"{node['NodeManagerAddress']}:{node['NodeManagerPort']}")


def _stub(channel):
    from ray.core.generated import node_manager_pb2_grpc

    return node_manager_pb2_grpc.NodeManagerServiceStub(channel)


def idle_per_node() -> dict[str, int]:
    """Idle workers on each alive node, as the keeper counts them."""
    import ray

    idle = {}
    for node in ray.nodes():
        if node.get("Alive"):
            with _channel(node) as channel:
                idle[node["NodeID"]] = len(idle_workers(_stub(channel)))
    return idle


def idle_workers(raylet) -> set[bytes]:
    """The ids of the idle Python workers a raylet reports: no job and no actor yet (a worker that
    ran a task keeps its job, and Ray does not hand it to an actor)."""
    from ray.core.generated import node_manager_pb2

    stats = raylet.GetNodeStats(node_manager_pb2.GetNodeStatsRequest(include_memory_info=False),
                                timeout=RPC_TIMEOUT_S)
    return {w.worker_id for w in stats.core_workers_stats
            if w.worker_type == 0 and _nil(w.job_id) and _nil(w.actor_id)}


def _nil(ray_id: bytes) -> bool:
    return all(b == 0xFF for b in ray_id)


class Starting:
    """Spares asked of one node that have not registered yet. A spare that registers shows up as a
    new idle worker id; one that registered and was taken between two looks stays "on its way"
    until ``STARTING_S`` has passed (the keeper looks every second while any is on its way)."""

    def __init__(self):
        self.asked = 0
        self.known: set[bytes] = set()  # idle ids when they were asked for
        self.arrived: set[bytes] = set()
        self.until = 0.0

    def pending(self, idle: set[bytes], now: float) -> int:
        if now >= self.until:
            self.asked = 0
            return 0
        self.arrived |= idle - self.known
        return max(0, self.asked - len(self.arrived))

    def ask(self, n: int, idle: set[bytes], now: float) -> None:
        self.asked = self.pending(idle, now) + n
        self.known, self.arrived = set(idle), set()
        self.until = now + STARTING_S


def to_start(target: int, idle: int, pending: int) -> int:
    """How many spares one node should start now (at most ``AT_ONCE``, none while one is on its way)."""
    return 0 if pending else min(AT_ONCE, max(0, target - idle))


class SpareKeeper:
    """Keeps ``target`` warm stream-actor workers idle on every alive node (see the module's text)."""

    def __init__(self, target: int):
        self.target = target
        self._starting: dict[str, Starting] = {}
        self._raylets: dict[str, object] = {}  # node id -> its raylet's stub, one channel each
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False
        self._nudged = 0.0

    def start(self) -> "SpareKeeper":
        if self.target > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="manta-spares", daemon=True)
            self._thread.start()
        return self

    def nudge(self) -> None:
        """A stream actor was just created: it probably took a spare, so check once streams stop
        coming (``SETTLE_S``)."""
        self._nudged = time.monotonic()
        self._wake.set()

    def _run(self) -> None:
        while True:  # a daemon thread: it ends with the replica's process
            settling = self._nudged + SETTLE_S - time.monotonic()
            if settling > 0:
                time.sleep(settling)
                continue
            try:
                self.top_up()
                if self._failing:
                    log.info("spare stream workers: the raylets answer again")
                self._failing = False
            except Exception as exc:  # noqa: BLE001 - spares are an optimisation; streams start without
                if not self._failing:
                    log.warning("spare stream workers unavailable (%s: %s); new streams start in a "
                                "process Ray starts for them", type(exc).__name__, exc)
                self._failing = True
            self._wake.wait(60.0 if self._failing else 1.0 if self._on_their_way() else CHECK_EVERY_S)
            self._wake.clear()

    def _on_their_way(self) -> bool:
        now = time.monotonic()
        return any(s.asked and now < s.until for s in self._starting.values())

    def top_up(self) -> None:
        """Start what each alive node lacks."""
        import ray

        nodes = [n for n in ray.nodes() if n.get("Alive")]
        for gone in self._raylets.keys() - {n["NodeID"] for n in nodes}:
            self._raylets.pop(gone).close()
            self._starting.pop(gone, None)
        for node in nodes:
            if node["NodeID"] not in self._raylets:
                self._raylets[node["NodeID"]] = _channel(node)
            raylet = _stub(self._raylets[node["NodeID"]])
            idle, now = idle_workers(raylet), time.monotonic()
            starting = self._starting.setdefault(node["NodeID"], Starting())
            n = to_start(self.target, len(idle), starting.pending(idle, now))
            if n:
                _prestart(raylet, n)
                starting.ask(n, idle, now)
                log.info("started %d spare stream worker(s) on node %s (%d idle)", n, node["NodeID"][:8],
                         len(idle), extra={"fields": {"event": "spares_started", "node": node["NodeID"],
                                                      "count": n, "idle": len(idle)}})


def _prestart(raylet, n: int) -> None:
    """Ask a raylet for ``n`` idle workers started with the stream actors' runtime env."""
    from ray._private.utils import get_runtime_env_info
    from ray.core.generated import common_pb2, node_manager_pb2
    from ray.runtime_env import RuntimeEnv

    env = get_runtime_env_info(RuntimeEnv(**RUNTIME_ENV), is_job_runtime_env=False, serialize=False)
    raylet.PrestartWorkers(node_manager_pb2.PrestartWorkersRequest(
        language=common_pb2.PYTHON, runtime_env_info=env, num_workers=n,
        keep_alive_duration_secs=KEEP_ALIVE_S), timeout=RPC_TIMEOUT_S)
