"""Starting or joining Ray and deploying the Serve app: the only place that decides how Ray runs.

A local Ray is started bound to 127.0.0.1 with the dashboard and usage stats off. Ray's dashboard
process still probes cloud metadata addresses at start, so the environment Ray inherits routes all
HTTP through a closed loopback port (gRPC ignores proxies; loopback is exempt). Ray 2.60 turns token
auth on for local clusters and writes the token to ~/.ray/auth_token, which every process of ours
on this machine reads; the Serve HTTP API itself needs no token. To join a cluster, pass its address
and provide its token the way Ray expects (RAY_AUTH_TOKEN or ~/.ray/auth_token).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

from actors.logs import prepare_environment
from actors.spares import PRELOAD
from streaming.settings import Settings

log = logging.getLogger("manta.runtime")

APP_NAME = "manta"


def check_port_free(port: int, setting: str) -> int:
    """``port`` if nothing listens on 127.0.0.1:port. Ray would otherwise wait for its node to start
    for a minute and fail without saying why."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As the exporter's HTTP server does: a port left in TIME_WAIT by a previous run is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            raise RuntimeError(f"{setting} {port} is not free on 127.0.0.1 ({exc.strerror}): choose another "
                               f"(MANTA_{setting.upper()}) or leave it unset for a free one") from None
    return port


def start_ray(settings: Settings) -> None:
    """Join ``settings.ray_address`` or start a private local Ray instance."""
    local = not settings.ray_address
    prepare_environment(local)  # before Ray is imported: it reads some of these at import time
    import ray

    if ray.is_initialized():
        return
    if local:
        # Ray was imported before the environment was set (a test run, an embedding app): apply
        # single-machine mode to the live constant too, or the driver announces its eth0 address.
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    started = time.monotonic()
    if local:
        # Metrics need no dashboard: Ray's per-node agent serves them, bound to 127.0.0.1 here.
        metrics = {} if settings.metrics_port is None else {
            "_metrics_export_port": check_port_free(settings.metrics_port, "metrics_port")}
        _importable_by_workers()
        ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", namespace=settings.namespace,
                 num_cpus=os.cpu_count() or 1, log_to_driver=False, logging_level=logging.WARNING,
                 # Spare stream workers import the stream actor's code before they are needed.
                 _system_config={"preload_python_modules": [PRELOAD]}, **metrics)
    else:
        if settings.metrics_port is not None:
            log.warning("metrics_port applies to a local Ray only: the cluster's nodes export their "
                        "metrics on the ports they were started with")
        ray.init(address=settings.ray_address, namespace=settings.namespace, log_to_driver=False,
                 logging_level=logging.WARNING)
    log.info("ray ready in %.1f s (%s)", time.monotonic() - started,
             "local" if local else settings.ray_address)


def _importable_by_workers() -> None:
    """Ray workers started ahead of any job (spares) find Manta's packages where this process does:
    a source checkout run without installing it is not on their path otherwise."""
    root = str(Path(__file__).resolve().parents[1])
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *paths])


def deploy(settings: Settings, restore: bool = True) -> str:
    """Start Serve on settings.host:port and deploy the Manta app; return its base URL. With
    ``restore`` the app brings back the streams saved in ``settings.data_dir`` as it starts."""
    from ray import serve

    from actors.serve.app import build_app

    # One HTTP proxy, on the head: every node of a cluster on one machine (tests) shares its
    # address, and a proxy per node would fight over the port. serve_config.yaml can say EveryNode.
    serve.start(proxy_location="HeadOnly", http_options={"host": settings.host, "port": settings.port})
    serve.run(build_app({"settings": settings.model_dump(mode="json"), "restore": restore}), name=APP_NAME,
              route_prefix="/", blocking=False)
    return settings.url


def shutdown(settings: Settings | None = None) -> None:
    """Local: stop the whole private Ray instance. Joined cluster: remove only our app."""
    import ray
    from ray import serve

    if not ray.is_initialized():
        return
    try:
        if settings is not None and settings.ray_address:
            serve.delete(APP_NAME)
    finally:
        ray.shutdown()
