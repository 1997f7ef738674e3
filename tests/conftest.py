"""Shared fixtures. The `service` fixture starts the real thing: a local Ray, the Serve app on a free
loopback port, real models. Tests talk to it over HTTP on 127.0.0.1 only."""

from __future__ import annotations

import os

import pytest

from actors.logs import prepare_environment
from tests.support.helpers import Api, free_port

# Before any test module imports Ray: a local Ray on loopback only, nothing sent off the machine.
prepare_environment(local=True)
# Webhooks are signed with this (tests/service/test_alerts.py checks the signature); set before Ray
# starts, so the alert desk's process has it too.
os.environ.setdefault("MANTA_WEBHOOK_SECRET", "a-test-secret-for-webhooks")

_SERVICE: list[Api] = []  # the session's service, once a test asked for it
# What runs in one worker, in order (pytest-xdist's loadgroup, pyproject.toml): everything that shares
# the session's Ray or loads models, whose timings assume it has the two cores to itself. The rest
# (streaming/: pure logic, no Ray, no weights, mostly waiting on real-time senders; the CLI's and
# the manifests' checks) runs in the other worker meanwhile.
_SHARED = ("tests/service/", "tests/models/")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.startswith(_SHARED):
            item.add_marker(pytest.mark.xdist_group("ray"))


@pytest.fixture(scope="module", autouse=True)
def remove_module_streams():
    """After each module, remove the streams it added to the shared service, as a user would with
    `manta stop --remove`: every stream actor holds a CPU share until removed, so a long session
    that only stopped them would leave later modules' streams waiting for a slot."""
    before = {api: _stream_ids(api) for api in _SERVICE}
    yield
    for api in _SERVICE:
        for sid in _stream_ids(api) - before.get(api, set()):
            r = api.http.delete(f"/v1/streams/{sid}", params={"remove": "true"})
            assert r.status_code in (200, 404), r.text


def _stream_ids(api: Api) -> set[str]:
    return {st["id"] for st in api.http.get("/v1/streams").json()["streams"]}


@pytest.fixture(scope="session")
def service(tmp_path_factory):
    from actors import runtime
    from streaming.settings import Settings

    # A private data directory: checkpoints of earlier runs must not leak into this one.
    settings = Settings(port=free_port(), data_dir=tmp_path_factory.mktemp("manta-data"))
    runtime.start_ray(settings)
    try:
        url = runtime.deploy(settings)
        api = Api(url)
        api.settings = settings
        assert api.get("/healthz").json()["ok"]
        _SERVICE.append(api)
        yield api
    finally:
        runtime.shutdown(settings)
