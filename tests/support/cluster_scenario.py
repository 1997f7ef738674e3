"""A Manta cluster on this machine, for tests/service/test_cluster.py (run as a separate process:
a process joins one Ray cluster at a time, and the test session already runs its own).

A head and a worker node (``ray.cluster_utils.Cluster``, both on 127.0.0.1, each with a resource
of its own), the Manta app with one ``models`` replica per node, two streams spread over the nodes.
Once both have committed segments the worker node is removed: its stream actor is restarted on the
head by Ray and resumes from its checkpoint. Prints one JSON object with what happened.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

from actors.logs import prepare_environment

prepare_environment(local=True)  # before Ray is imported: loopback only, nothing sent off the machine

import httpx  # noqa: E402
import ray  # noqa: E402
from ray import serve  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from actors import runtime  # noqa: E402
from actors.model_service import DEPLOYMENT  # noqa: E402
from actors.stream_actor import actor_name  # noqa: E402
from streaming.settings import Settings  # noqa: E402
from tests.support.helpers import wait_serving  # noqa: E402

NODE = {"node_ip_address": "127.0.0.1", "include_dashboard": False, "object_store_memory": 200 * 2**20}


def node_of_actor(name: str, namespace: str) -> str:
    handle = ray.get_actor(name, namespace=namespace)
    return ray.get(handle.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id()))


def replica_nodes() -> list[str]:
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if a["namespace"] == "serve" and f"#{DEPLOYMENT}#" in a["name"]]
    return sorted(node_of_actor(n, "serve") for n in names)


def segments(http, sid: str) -> list[dict]:
    return http.get(f"/v1/streams/{sid}/segments", params={"limit": 1000}).json()["segments"]


def main(clip: str, port: int) -> None:
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False
    out: dict = {}
    cluster = Cluster(initialize_head=True, head_node_args={**NODE, "num_cpus": 2, "resources": {"head": 1}})
    worker = cluster.add_node(**NODE, num_cpus=2, resources={"worker": 1})
    cluster.wait_for_nodes()
    data = tempfile.TemporaryDirectory(prefix="manta-cluster-")
    settings = Settings(ray_address=cluster.address, port=port, data_dir=data.name, model_replicas=2)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, trust_env=False)
    try:
        runtime.start_ray(settings)
        head_id, worker_id = cluster.head_node.node_id, worker.node_id
        out["nodes"] = {"head": head_id, "worker": worker_id}
        runtime.deploy(settings, restore=False)
        wait_serving(http)
        ids = []
        for name in ("north", "south"):
            r = http.post("/v1/streams", json={"source": clip, "name": name})
            r.raise_for_status()
            ids.append(r.json()["id"])
        placed = {sid: node_of_actor(actor_name(sid), settings.namespace) for sid in ids}
        out["streams_on"] = placed
        out["replicas_on"] = replica_nodes()
        # Both streams commit a few segments before the worker node goes away.
        deadline = time.monotonic() + 400
        while min(http.get(f"/v1/streams/{sid}").json().get("segments", 0) for sid in ids) < 2:
            assert time.monotonic() < deadline, [http.get(f"/v1/streams/{sid}").json() for sid in ids]
            time.sleep(0.5)
        out["before"] = {sid: segments(http, sid) for sid in ids}
        cluster.remove_node(worker, allow_graceful=False)
        out["removed_at"] = time.time()
        deadline = time.monotonic() + 600
        final = {}
        while len(final) < len(ids):
            for sid in ids:
                try:
                    r = http.get(f"/v1/streams/{sid}")
                except httpx.HTTPError:
                    continue
                if r.status_code != 200:  # the API replica may have been on the removed node (503)
                    continue
                st = r.json()
                if st.get("state") in ("finished", "failed"):
                    final[sid] = st
            assert time.monotonic() < deadline, final
            time.sleep(0.5)
        out["final"] = final
        out["after"] = {sid: segments(http, sid) for sid in ids}
        out["streams_on_after"] = {sid: node_of_actor(actor_name(sid), settings.namespace) for sid in ids}
        out["models"] = serve.get_deployment_handle(DEPLOYMENT, runtime.APP_NAME).stats.remote().result()["node"]
    finally:
        print(json.dumps(out), flush=True)
        http.close()
        runtime.shutdown(settings)
        cluster.shutdown()
        data.cleanup()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
