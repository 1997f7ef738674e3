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
def test_serve_configs_validate_and_build_the_app(name):
    from ray.serve.deployment import Application
    from ray.serve.schema import ServeDeploySchema

    from actors.serve.app import build_app

    config = serve_configs()[name]
    ServeDeploySchema.model_validate(config)
    [app] = config["applications"]
    assert app["import_path"] == "actors.serve.app:build_app"
    assert isinstance(build_app(app["args"]), Application)
    for deployment in app.get("deployments", []):  # overrides must name deployments the app has
        assert deployment["name"] in {"MantaApi", "Answerer", "models"}, deployment["name"]


def test_a_bad_setting_in_a_serve_config_is_refused_when_the_app_is_built():
    from actors.serve.app import build_app

    with pytest.raises(ValueError, match="model_replicas"):
        build_app({"settings": {"model_replicas": 0}})
