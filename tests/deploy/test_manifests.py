"""The deployment files stay in step with the code: serve_config.yaml and the KubeRay RayService's
Serve config validate as Serve configs, and their Manta settings build the app (an unknown or badly
typed setting fails here, not on a cluster)."""

from __future__ import annotations

import pytest
import yaml

from tests.support.helpers import REPO


def serve_configs() -> dict[str, dict]:
    kuberay = [d for d in yaml.safe_load_all((REPO / "deploy/kuberay/rayservice.yaml").read_text())
               if d and d.get("kind") == "RayService"]
    return {"serve_config.yaml": yaml.safe_load((REPO / "serve_config.yaml").read_text()),
            "deploy/kuberay/rayservice.yaml": yaml.safe_load(kuberay[0]["spec"]["serveConfigV2"])}


@pytest.mark.parametrize("name", sorted(serve_configs()))
def test_serve_configs_validate_and_build_the_app(name, monkeypatch):
    # An exposed config (host 0.0.0.0) builds only with a token, which the manifest takes from a secret.
    monkeypatch.setenv("MANTA_API_TOKEN", "t" * 32)
    from ray.serve.deployment import Application
    from ray.serve.schema import ServeDeploySchema

    from actors.model_service import bind_models
    from actors.serve.app import build_app

    config = serve_configs()[name]
    ServeDeploySchema.model_validate(config)
    [app] = config["applications"]
    assert app["import_path"] == "actors.serve.app:build_app"
    built = build_app(app["args"])
    assert isinstance(built, Application)
    names = {"MantaApi", "Answerer"} | set(bind_models(app["args"]["settings"]))
    for deployment in app.get("deployments", []):  # overrides must name deployments the app has
        assert deployment["name"] in names, deployment["name"]


def test_a_bad_setting_in_a_serve_config_is_refused_when_the_app_is_built():
    from actors.serve.app import build_app

    with pytest.raises(ValueError, match="model_replicas"):
        build_app({"settings": {"model_replicas": 0}})


def test_per_model_deployments_follow_the_models_the_settings_use():
    from actors.model_service import bind_models

    assert list(bind_models({})) == ["models"]
    split = bind_models({"model_deployments": "per-model", "speaker_model": "resemblyzer"})
    assert sorted(split) == ["models-frames", "models-ocr", "models-provisional", "models-speech",
                             "models-stream", "models-text", "models-voice"]
    lean = bind_models({"model_deployments": "per-model", "visual_model": "off", "ocr": "off",
                        "stream_model": "off", "asr_provisional_model": "off", "speaker_model": "off"})
    assert sorted(lean) == ["models-speech", "models-text"]
