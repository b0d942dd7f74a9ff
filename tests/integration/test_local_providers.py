"""The local providers with real processes: a function instance (worker process, cold then warm,
reaped after its keep-alive, CPU-limited by a cgroup where writable) and a VM (a Ray worker node
joined to a head, placing work through its vm-id resource, then stopped alone; adopted by a new
provider object, then killed with its raylet)."""
import os
import time

import numpy as np
import pytest

from procurement.providers.local import LocalFunctionProvider, LocalVmProvider, cgroup_mode
from serving import digits

pytestmark = pytest.mark.live


@pytest.fixture(scope="module", autouse=True)
def digits_cache():
    # Same cache as the live fixture: trained digits models are reused, not retrained.
    import tempfile
    os.environ.setdefault("HYBRIDSERVE_CACHE", os.path.join(tempfile.gettempdir(), "hybridserve-test-cache"))
    digits.ensure_trained("digits-small")


def test_function_cold_then_warm_then_reaped():
    x, y = digits.test_samples()
    fp = LocalFunctionProvider(keep_alive_s=1.0, concurrency_limit=1)
    try:
        fp.deploy("digits-small", memory_mb=885)  # half a vCPU
        first = fp.invoke("digits-small", x[:8], timeout_s=120)
        assert first.ok and first.cold_start, first.error
        assert (first.payload.argmax(axis=1) == y[:8]).mean() >= 0.6  # the trained model answered
        second = fp.invoke("digits-small", x[:8], timeout_s=30)
        assert second.ok and not second.cold_start and second.duration_ms < first.duration_ms
        assert second.billed_ms >= second.duration_ms
        if cgroup_mode() == "v1":
            inst = fp._functions["digits-small"].instances[0]
            cpu_dir = inst.limit.dirs[0]
            with open(os.path.join(cpu_dir, "cpu.cfs_quota_us")) as fh:
                assert int(fh.read()) == int(885 / 1769 * 100_000)  # 0.5 vCPU: 50,028 us of every 100 ms
            with open(os.path.join(cpu_dir, "cgroup.procs")) as fh:
                assert str(inst.proc.pid) in fh.read().split()
        assert fp.invoke("other", x[:1], timeout_s=5).error.startswith("throttled")
        time.sleep(1.2)
        assert fp.reap() == 1
        assert fp.stats()["digits-small"]["instances"] == 0
        if cgroup_mode() == "v1":
            assert not os.path.exists(cpu_dir)  # the group went with the instance
    finally:
        fp.close()


@pytest.mark.slow
def test_vm_joins_as_ray_node_then_stops_alone():
    ray = pytest.importorskip("ray")
    ctx = ray.init(address="local", num_cpus=1, include_dashboard=False)
    try:
        vp = LocalVmProvider(ctx.address_info["gcs_address"], boot_s=lambda t: 1.0, vcpu_of=lambda t: 1)
        vm = vp.launch("req-1", "c5.large", "digits-small", now_s=0.0)
        assert vp.launch("req-1", "c5.large", "digits-small", now_s=0.0) == vm  # idempotent
        assert [r.state for r in vp.list(0.5)] == ["booting"]  # still in its emulated boot
        assert [r.state for r in vp.list(1.5)] == ["ready"]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any(n["Alive"] and vm in n["Resources"] for n in ray.nodes()):
            time.sleep(0.5)

        @ray.remote(num_cpus=0, resources={vm: 1})
        def node_id():
            return ray.get_runtime_context().get_node_id()

        assert ray.get(node_id.remote(), timeout=60) != ray.get_runtime_context().get_node_id()
        vp.terminate(vm, now_s=5.0)
        assert vp.list(6.0) == [] and vp.poll_errors() == []
        assert np.sum([n["Alive"] for n in ray.nodes()]) == 1  # the head alone remains
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_a_vm_node_is_adopted_by_a_new_provider_then_killed_with_its_raylet():
    """A real `ray start` VM: a provider made again in this process adopts it (same process, no
    second node); the injected death (SIGKILL of `ray start`) takes its raylet and workers with
    it (Ray's fate sharing), and the cluster sees the node dead."""
    import sys
    ray = pytest.importorskip("ray")
    from procurement.providers.local_vm import VmFaults
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from conftest import _alive, _descendants

    ctx = ray.init(address="local", num_cpus=1, include_dashboard=False)
    try:
        gcs = ctx.address_info["gcs_address"]
        first = LocalVmProvider(gcs, boot_s=lambda t: 0.0, vcpu_of=lambda t: 1)
        vm = first.launch("req-1", "local.small", "digits-small", now_s=0.0)
        first.list(0.0)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(n["Alive"] and vm in n["Resources"] for n in ray.nodes()):
            time.sleep(0.5)
        assert any(n["Alive"] and vm in n["Resources"] for n in ray.nodes()), "the VM's node did not join"
        pid = first.pids()[vm]
        node_tree = _descendants(pid) | {pid}  # ray start, its raylet, the raylet's workers
        second = LocalVmProvider(gcs, boot_s=lambda t: 0.0, vcpu_of=lambda t: 1,
                                 faults=VmFaults(die_after_s=1.0))
        assert [r.vm_id for r in second.adopt(0.5)] == [vm] and second.pids() == {vm: pid}
        assert sum(1 for n in ray.nodes() if n["Alive"]) == 2  # the head and that one node: no duplicate
        assert second.list(1.0) == []  # killed by the fault
        assert [e.kind for e in second.poll_errors()] == ["died"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(_alive(p) for p in node_tree):
            time.sleep(0.5)
        assert not [p for p in node_tree if _alive(p)], "the node's processes outlived it"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(n["Alive"] and vm in n["Resources"] for n in ray.nodes()):
            time.sleep(1.0)
        assert not any(n["Alive"] and vm in n["Resources"] for n in ray.nodes())
    finally:
        ray.shutdown()
