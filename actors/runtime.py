"""Starting or joining Ray and deploying the Serve app: the only place that decides how Ray runs.

A local Ray is started bound to 127.0.0.1 with the dashboard and usage stats off. Ray's dashboard
process still probes cloud metadata addresses at start, so the environment Ray inherits routes all
HTTP through a closed loopback port (gRPC ignores proxies; loopback is exempt). Ray 2.60 turns token
auth on for local clusters and writes the token to ~/.ray/auth_token, which every process of ours
on this machine reads; the Serve HTTP API itself needs no token. To join a cluster, pass its address
and provide its token the way Ray expects (RAY_AUTH_TOKEN or ~/.ray/auth_token).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time

from streaming.settings import Settings

log = logging.getLogger("manta.runtime")

CLOSED_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens, so nothing leaves
LOCAL_ENV = {
    "http_proxy": CLOSED_PROXY, "HTTP_PROXY": CLOSED_PROXY,
    "https_proxy": CLOSED_PROXY, "HTTPS_PROXY": CLOSED_PROXY,
    "no_proxy": "localhost,127.0.0.1,::1", "NO_PROXY": "localhost,127.0.0.1,::1",
    "RAY_USAGE_STATS_ENABLED": "0",
    # Ray's single-machine mode: keep every Ray address on 127.0.0.1 (otherwise Ray swaps loopback
    # for the interface address it finds by routing towards 8.8.8.8).
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}
# Models come from installed packages; any hub lookup would be a bug, so make it fail fast.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false",
}
APP_NAME = "manta"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": round(record.created, 3), "level": record.levelname.lower(),
                 "logger": record.name, "msg": record.getMessage()}
        fields = getattr(record, "fields", None)  # log.info(..., extra={"fields": {...}})
        if isinstance(fields, dict):
            entry.update({k: v for k, v in fields.items() if k not in entry})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: int = logging.INFO) -> None:
    """Structured (JSON lines) logs for Manta's own loggers, on stderr."""
    logger = logging.getLogger("manta")
    if any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def prepare_environment(local: bool) -> None:
    os.environ.update(OFFLINE_ENV)
    if local:
        os.environ.update(LOCAL_ENV)


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
        ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", namespace=settings.namespace,
                 num_cpus=os.cpu_count() or 1, log_to_driver=False, logging_level=logging.WARNING,
                 **metrics)
    else:
        if settings.metrics_port is not None:
            log.warning("metrics_port applies to a local Ray only: the cluster's nodes export their "
                        "metrics on the ports they were started with")
        ray.init(address=settings.ray_address, namespace=settings.namespace, log_to_driver=False,
                 logging_level=logging.WARNING)
    log.info("ray ready in %.1f s (%s)", time.monotonic() - started,
             "local" if local else settings.ray_address)


def deploy(settings: Settings, restore: bool = True) -> str:
    """Start Serve on settings.host:port and deploy the Manta app; return its base URL. With
    ``restore`` the app brings back the streams saved in ``settings.data_dir`` as it starts."""
    from ray import serve

    from .app import build_app

    serve.start(http_options={"host": settings.host, "port": settings.port})
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
