"""A procured VM, a real Ray worker node, receives its planned share of a variant's requests.

A fresh local Ray head with Serve; a LocalVmProvider VM joins it as a worker node; the digits
variant's Serve app `vm-<id>` is deployed on that node (serving.deployments.vm_app, as the
control loop deploys it); the real Router class (no Serve ingress: tests/unit/serving's harness)
holds the head's in-process replicas and that app's DeploymentHandle, and the plan's routing
table weights them 1 : 3. Of 40 requests the VM's node must answer 30, and its answers must come
from that node (the replica's node id), not the head's."""
import asyncio
import os
import sys
import tempfile
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "unit", "serving"))

pytestmark = pytest.mark.live

VARIANT = "digits-small"


@pytest.fixture(scope="module")
def ray_head():
    ray = pytest.importorskip("ray")
    from ray import serve

    os.environ.setdefault("HYBRIDSERVE_CACHE", os.path.join(tempfile.gettempdir(), "hybridserve-test-cache"))
    from serving import digits
    digits.ensure_trained(VARIANT)
    ctx = ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False,
                   runtime_env={"env_vars": {"OMP_NUM_THREADS": "1",
                                             "HYBRIDSERVE_CACHE": os.environ["HYBRIDSERVE_CACHE"]}})
    serve.start(http_options={"host": "127.0.0.1", "port": 0}, proxy_location="Disabled")
    try:
        yield ctx
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def test_a_procured_vm_node_serves_its_planned_share(ray_head):
    import ray
    from ray import serve
    from ray.serve.api import _run

    from procurement.providers.local import LocalVmProvider
    from router_harness import build_router, close_router
    from serving.deployments import vm_app
    from serving.settings import ServingConfig

    vp = LocalVmProvider(ray_head.address_info["gcs_address"], boot_s=lambda t: 0.5, vcpu_of=lambda t: 1)
    vm = vp.launch("req-routing", "local.small", VARIANT, now_s=0.0)
    router = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(n["Alive"] and vm in n["Resources"] for n in ray.nodes()):
            vp.list(time.monotonic())  # past the emulated boot: the provider starts the node
            time.sleep(0.5)
        node = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and vm in n["Resources"])
        app = f"vm-{vm}"
        settings = ServingConfig(functions={"enabled": False}, control={"prewarm_functions": False})
        _run(vm_app(VARIANT, vm, 1, settings), name=app, route_prefix=None, _blocking=True)
        handle = serve.get_deployment_handle(f"model-{VARIANT}", app_name=app)
        # From the GCS's actor table (the state API needs the dashboard, off here).
        replica_nodes = {a["Address"]["NodeID"] for a in ray._private.state.actors().values()
                         if a.get("State") == "ALIVE" and app in (a.get("Name") or "") + (a.get("ActorClassName") or "")}
        assert replica_nodes == {node}  # the app's replica runs on the VM's node, not the head

        router = build_router([{"name": "digits", "slo_ms": 10_000, "min_accuracy": 0.5, "variants": [VARIANT]}],
                              {VARIANT: 0.9}, settings.model_dump(), {})
        router._stop.set()
        router.targets[VARIANT][app] = (handle, 1)  # what _set_vm_targets adds for a serving VM
        # The plan: the head's share of its local.small drains 5 req/s for this variant, the VM 15.
        router.apply_control({"routing": {VARIANT: {"targets": {"head": 5.0, app: 15.0}, "batch_size": 2,
                                                    "max_vm_wait_ms": None, "spill": True}}})

        async def go():
            x = np.zeros((1, 1, 8, 8), np.float32)
            return [await router._run(VARIANT, x, 10_000.0, time.perf_counter()) for _ in range(40)]
        out = asyncio.run(go())
        targets = [o[3] for o in out]
        assert targets.count(app) == 30 and targets.count("head") == 10
        assert all(o[1] == "vm" and o[0].shape == (1, 10) for o in out)
    finally:
        if router is not None:
            close_router(router)
        try:
            serve.delete(f"vm-{vm}")
        finally:
            vp.terminate(vm, now_s=time.monotonic(), grace_s=5.0)
