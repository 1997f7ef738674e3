"""The models as one shared Serve deployment (actors/model_service.py): stream actors hold no
weights, and a model replica that dies is replaced while its streams wait, losing nothing."""

from __future__ import annotations

import time

import pytest

from tests.support.helpers import media, media_head

CLIP = "jfk_inaugural_1961.flac"
LONG_CLIP = "manifesto_audiobook_titlecard.mp4"  # its first 50 s (cut in a pause): the kill lands while it is read
LONG_CLIP_S = 50.5


def _actor(service, sid):
    import ray

    from actors.stream_actor import actor_name

    return ray.get_actor(actor_name(sid), namespace=service.settings.namespace)


def _model_replicas() -> list[str]:
    import ray

    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == "serve" and "#models#" in a["name"]]


def _texts(service, sid) -> list[tuple]:
    segs = service.get(f"/v1/streams/{sid}/segments", params={"limit": 1000}).json()["segments"]
    return [(s["start"], s["end"], s["text"]) for s in segs]


@pytest.fixture(scope="module")
def jfk(service) -> str:
    """CLIP ingested through the shared deployment, to the end: the reference other setups must match."""
    sid = service.add(str(media(CLIP)), name="weightless")
    service.wait(sid, states=("finished",), timeout=300)
    return sid


def test_stream_actors_hold_no_model_weights(service, jfk):
    import ray

    sid = jfk
    loaded = ray.get(_actor(service, sid).__ray_call__.remote(
        lambda self: sorted(m for m in ("torch", "ctranslate2", "onnxruntime", "faster_whisper", "transformers")
                            if m in __import__("sys").modules)))
    assert loaded == [], f"a stream actor imported model runtimes: {loaded}"
    assert len(_model_replicas()) == 1  # one copy of the models for every stream
    assert any("ask not what your country" in t.lower() for *_, t in _texts(service, sid))


@pytest.mark.slow
def test_a_killed_model_replica_is_replaced_and_its_streams_lose_nothing(service, tmp_path):
    import ray

    clip = media_head(LONG_CLIP, LONG_CLIP_S, tmp_path)

    # A file read as fast as the models allow is transcribed the same every time: the stream whose
    # replica is killed must end with exactly the segments of one left alone.
    reference = service.add(str(clip), name="replica-ref")
    service.wait(reference, states=("finished",), timeout=300)
    expected = _texts(service, reference)
    sid = service.add(str(clip), name="replica-kill")
    deadline = time.monotonic() + 120
    while service.get(f"/v1/streams/{sid}").json().get("segments", 0) < 2:
        assert time.monotonic() < deadline, service.get(f"/v1/streams/{sid}").json()
        time.sleep(0.5)
    before = _texts(service, sid)
    [name] = _model_replicas()
    ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
    seen_waiting, deadline = False, time.monotonic() + 240
    while True:
        st = service.get(f"/v1/streams/{sid}").json()
        seen_waiting |= "model service" in (st.get("waiting_for") or "")
        if st["state"] in ("finished", "failed"):
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.2)
    assert st["state"] == "finished", st
    after = _texts(service, sid)
    assert after[:len(before)] == before  # nothing committed before the kill changed or went
    assert after == expected  # and the whole transcript is the one an undisturbed stream gets
    assert seen_waiting, "status never said the stream waited for the model service"
    replicas = _model_replicas()
    assert len(replicas) == 1 and replicas != [name]  # Serve replaced it


def test_a_call_the_service_holds_unanswered_shows_as_waiting(monkeypatch):
    """While no replica is up, Serve's router holds a call without an error: a stream that was
    between calls when its replica died must still say what it waits for."""
    import threading
    from types import SimpleNamespace

    from actors import model_service

    monkeypatch.setattr(model_service, "SLOW_CALL_S", 0.2)
    answer = threading.Event()

    def held(*_):
        return SimpleNamespace(result=lambda: answer.wait(10) and "segments")

    remote = model_service.RemoteModels(SimpleNamespace(call=SimpleNamespace(remote=held)), "s1")
    remote._route = {"asr": remote.handles[model_service.DEPLOYMENT]}
    got = []
    caller = threading.Thread(target=lambda: got.append(remote.call("asr", b"", "s1", 0)))
    caller.start()
    time.sleep(0.5)
    assert "model service 'asr'" in (remote.waiting_for or "")
    answer.set()
    caller.join(5)
    assert got == ["segments"] and remote.waiting_for is None


def test_a_model_that_cannot_load_fails_the_streams_that_need_it_with_the_reason(service):
    import ray
    from ray import serve

    from actors.model_service import ModelService
    from actors.stream_actor import StreamActor, actor_name

    settings = service.settings.model_copy(update={"asr_model": "/nonexistent/whisper"}).model_dump(mode="json")
    handle = serve.run(ModelService.bind(settings), name="broken-models", route_prefix=None)
    actor = StreamActor.options(name=actor_name("broken-asr"), namespace=service.settings.namespace).remote(
        "broken-asr", "broken-asr", str(media(CLIP)), settings, models=handle)
    try:
        ray.get(actor.start.remote(), timeout=60)
        deadline = time.monotonic() + 60
        while (st := ray.get(actor.status.remote(), timeout=30))["state"] != "failed":
            assert time.monotonic() < deadline, st
            time.sleep(0.2)
        assert "/nonexistent/whisper" in st["last_error"] and "ModelError" in st["last_error"], st
        assert "Traceback" not in st["last_error"]  # the reason, not Ray's remote traceback
    finally:
        ray.kill(actor)
        serve.delete("broken-models")


def test_per_model_deployments_give_a_stream_what_one_deployment_gives(service, jfk):
    """model_deployments: per-model (a GPU box): each model in a deployment of its own, reached
    through one handle each; a stream gets exactly the segments it gets from the single deployment."""
    import ray
    from ray import serve

    from actors.model_service import bind_models
    from actors.stream_actor import StreamActor, actor_name

    reference = jfk
    settings = service.settings.model_copy(update={"model_deployments": "per-model"}).model_dump(mode="json")
    bound = bind_models(settings)
    assert {"models-speech", "models-text", "models-stream"} <= set(bound)
    handles = {name: serve.run(app, name=f"split-{name}", route_prefix=None) for name, app in bound.items()}
    actor = StreamActor.options(name=actor_name("split-jfk"), namespace=service.settings.namespace).remote(
        "split-jfk", "split-jfk", str(media(CLIP)), settings, models=handles)
    try:
        ray.get(actor.start.remote(), timeout=60)
        deadline = time.monotonic() + 300
        while (st := ray.get(actor.status.remote(), timeout=30))["state"] not in ("finished", "failed"):
            assert time.monotonic() < deadline, st
            time.sleep(0.5)
        assert st["state"] == "finished", st
        segs = ray.get(actor.segments.remote(None, None, 1000))
        got = [(s["start"], s["end"], s["text"]) for s in segs]
        assert got == _texts(service, reference)
        # Speaker labels too, from the voice deployment when the speaker model is on.
        ref = service.get(f"/v1/streams/{reference}/segments", params={"limit": 1000}).json()["segments"]
        assert [s.get("speaker") for s in segs] == [s.get("speaker") for s in ref]
        assert ("models-voice" in bound) == (service.settings.speaker_model != "off")
        if service.settings.speaker_model != "off":  # one voice: one speaker, from the clustering
            assert {s.get("speaker") for s in segs} - {None} == {"S1"}
        replicas = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == "serve"]
        assert any("#models-speech#" in n for n in replicas) and any("#models-text#" in n for n in replicas)
    finally:
        ray.kill(actor)
        for name in handles:
            serve.delete(f"split-{name}")
