"""The leaf every Ray process of ours imports first: structured logs and the process environment.

Kept apart from runtime.py (which starts Ray and deploys the app, and so imports the Serve app) so a
stream actor or a Serve replica can configure itself without importing the code that deploys it.

Ray's dashboard process probes cloud metadata addresses at start, so the environment a local Ray
inherits routes all HTTP through a closed loopback port (gRPC ignores proxies; loopback is exempt).
Our own processes (stream actors, the API, the answer model's client) then put the operator's proxy
settings back, saved before they were replaced: FFmpeg and httpx honour ``http_proxy``, and a
source on another host must reach it the way the operator's machine allows (directly, or through
the operator's proxy). Where a source may go is the source policy's to decide
(streaming/source/policy.py), not a broken proxy's.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from streaming.source.redact import redact_text

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
# The operator's proxy variables as they were before Ray's were set (JSON), inherited by every
# process of the local Ray so each of ours can put them back.
SAVED_EGRESS = "MANTA_OPERATOR_PROXY_ENV"
PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
              "no_proxy", "NO_PROXY")


class JsonFormatter(logging.Formatter):
    """One JSON object a line. Every URI in it is redacted (streaming/source/redact.py): a message, a
    field or a traceback may quote a source's credentials, and logs are read by more people than
    the API's callers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": round(record.created, 3), "level": record.levelname.lower(),
                 "logger": record.name, "msg": record.getMessage()}
        fields = getattr(record, "fields", None)  # log.info(..., extra={"fields": {...}})
        if isinstance(fields, dict):
            entry.update({k: v for k, v in fields.items() if k not in entry})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return redact_text(json.dumps(entry, default=str))


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
    """``local``: the driver, before it starts a local Ray (Ray's processes get the closed proxy).
    Otherwise: one of our own processes, which gets the operator's egress back."""
    os.environ.update(OFFLINE_ENV)
    if local:
        if SAVED_EGRESS not in os.environ:
            os.environ[SAVED_EGRESS] = json.dumps({k: os.environ[k] for k in PROXY_VARS
                                                   if k in os.environ and os.environ[k] != LOCAL_ENV.get(k)})
        os.environ.update(LOCAL_ENV)
    else:
        restore_egress()


def restore_egress() -> None:
    """The operator's proxy settings back in this process, in place of the closed proxy that keeps
    Ray's own processes from probing the network. Nothing to do in a Ray we did not start."""
    saved = os.environ.get(SAVED_EGRESS)
    if saved is None:
        return
    try:
        values = json.loads(saved)
    except ValueError:
        values = {}
    for k in PROXY_VARS:
        if isinstance(values.get(k), str):
            os.environ[k] = values[k]
        else:
            os.environ.pop(k, None)
