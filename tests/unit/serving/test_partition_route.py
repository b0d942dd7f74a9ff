"""A partition plan reaching the live router (issue 13): the real Router class (no Ray) gets the
plan's record through `apply_control` exactly as the control loop sends it
(`dataclasses.asdict(SetFunctionConfig(..., partition_plan=plan))`), deploys the chain's
functions on its LocalFunctionProvider, serves a spilled request through the chain (worker
processes, behind `slow`), falls back to a VM target when the chain fails, and serves the
variant whole again when a later plan drops the partitions. Nothing is left in the store."""
import asyncio
import dataclasses
import math
import os
import time

import numpy as np
import pytest
from router_harness import FakeVmHandle, build_router, close_router

from controller.core import SetFunctionConfig
from procurement.partition_planner import MB, PartitionEstimate, PartitionPlan
from serving.partition.weights import partition_weights_path
from serving.partition_route import is_partition_function, plan_from_dict

VARIANT = "squeezenet"
BOUNDS = ((0, 2, 1769), (2, 10, 1769))


def plan_of(bounds=BOUNDS) -> PartitionPlan:
    parts = tuple(PartitionEstimate(s, e, mb, 10.0, 20.0, 10.0, 1e-6, 300.0, 1.0, False, False) for s, e, mb in bounds)
    return PartitionPlan(VARIANT, 3000.0, parts, 40.0, 2e-6, 7)


def record(plan: PartitionPlan | None, memory_mb: int = 1769, warm_pool: int = 0) -> dict:
    """What controller/live/control_loop.py sends for one function record."""
    return dataclasses.asdict(SetFunctionConfig(VARIANT, memory_mb, warm_pool, partition_plan=plan))


@pytest.fixture
def router(tmp_path, monkeypatch):
    monkeypatch.setenv("HYBRIDSERVE_CACHE", str(tmp_path / "cache"))  # weights and store dirs
    settings = {"functions": {"enabled": True, "concurrency_limit": 4, "keep_alive_s": 600},
                "control": {"prewarm_functions": False}, "head_in_process": False}
    r = build_router([{"name": "images", "slo_ms": 120_000, "min_accuracy": 0.1, "variants": [VARIANT]}],
                     {VARIANT: 0.6}, settings, {VARIANT: FakeVmHandle()})
    # A planned route whose budget no wait fits (-1 ms): every request spills.
    r.core.apply_routing({VARIANT: {"targets": {"head": 10.0}, "batch_size": 1, "max_vm_wait_ms": -1.0,
                                    "spill": True}})
    yield r
    close_router(r)


def run(router, batch):
    return asyncio.run(router._run(VARIANT, batch, 120_000.0, time.perf_counter()))


def test_plan_round_trips_through_the_control_loops_dict():
    plan = plan_of()
    doc = record(plan)["partition_plan"]
    assert isinstance(doc, dict) and plan_from_dict(doc) == plan
    assert plan_from_dict({**doc, "partitions": list(doc["partitions"])}) == plan  # a list after JSON
    assert is_partition_function("squeezenet-part-0-2") and not is_partition_function("squeezenet")


def test_apply_control_deploys_the_chain_then_whole_again_and_a_failed_chain_falls_back(router):
    from procurement.providers.local import FunctionFaults

    router.apply_control({"functions": [record(plan_of(), warm_pool=1)]})
    assert router.partitions.wait_ready(VARIANT, 120.0)
    names = ["squeezenet-part-0-2", "squeezenet-part-2-10"]
    assert router.partitions.function_names(VARIANT) == names
    stats = router.functions.stats()
    assert {n: stats[n]["memory_mb"] for n in names} == {n: 1769 for n in names}
    weights_dir = router.partitions.weights_dir
    assert weights_dir.startswith(os.environ["HYBRIDSERVE_CACHE"])
    for s, e, _ in BOUNDS:
        assert os.path.isfile(partition_weights_path(weights_dir, VARIANT, s, e))
    # The chain keeps its warm pool; the whole function keeps its memory and no warm pool.
    assert router.fn_memory[VARIANT] == 1769 and router.fn_warm_pool[VARIANT] == 0
    assert router.partitions.status()[VARIANT]["warm_pool"] == 1

    # Every invocation fails: the chain fails (each hop retried), and the request is answered
    # by the VM target, as a failed single function call is.
    router.functions.set_faults(FunctionFaults(error_rate=1.0))
    probs, backend, cold, target, usd, retried = run(router, np.zeros((1, 3, 224, 224), np.float32))
    assert (backend, target, retried, usd) == ("vm", "head", "function:error", 0.0)
    assert router.targets[VARIANT]["head"][0].calls == 1
    assert router.partitions.stats()[VARIANT]["errors"] == 1
    assert "hop 0" in router.partitions.status()[VARIANT]["last_error"]
    router.functions.set_faults(None)

    # A later plan without partitions: the variant is one function again.
    router.apply_control({"functions": [record(None, memory_mb=2048)]})
    assert router.partitions.get(VARIANT) is None and "plan" not in router.partitions.status().get(VARIANT, {})
    assert router.functions.stats()[VARIANT]["memory_mb"] == 2048
    assert router.partitions.store.list_keys() == []
    # The partition functions are not reported to the control loop on their own.
    assert set(router.collect(time.time())["functions"]) == {VARIANT}


@pytest.mark.slow
def test_a_spilled_request_runs_through_the_chain_of_worker_processes(router):
    """The chain's answer is exactly the whole model's, every hop billed, nothing left behind."""
    import mxnet as mx

    from controller.config import FunctionPlatformConfig
    from controller.ledger import function_charge_usd
    from serving.partition.handler import PartitionRunner
    from serving.runtimes import softmax

    batch = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    expected = softmax(PartitionRunner().whole(VARIANT)(mx.nd.array(batch)).asnumpy()).astype(np.float32)
    router.partitions.executor.payload_limit_bytes = 1 * MB  # block 1's output (1.4 MiB) goes via the store
    router.partitions.executor.timeout_s = 300.0
    router.apply_control({"functions": [record(plan_of())]})
    assert router.partitions.wait_ready(VARIANT, 120.0)

    probs, backend, cold, target, usd, retried = run(router, batch)
    assert (backend, cold, retried) == ("function", True, None)
    assert target == "chain:[0,2)@1769 + [2,10)@1769"
    np.testing.assert_array_equal(probs, expected)
    assert int(np.argmax(probs[0])) == int(np.argmax(expected[0]))
    # Billed: each hop at least its invocation price; no single-function batch charged.
    fp = FunctionPlatformConfig()
    assert usd > 2 * function_charge_usd(1.0, 1769, fp) and not math.isnan(usd)
    assert router.partitions.store.list_keys() == []
    stats = router.functions.stats()
    assert stats["squeezenet-part-0-2"]["invocations"] == 1 and stats["squeezenet-part-2-10"]["invocations"] == 1
    assert stats[VARIANT]["invocations"] == 0  # the whole function never ran

    # Warm now: no cold start; the control loop sees the chain's requests as the variant's.
    probs2, _, cold2, _, _, _ = run(router, batch)
    assert cold2 is False
    np.testing.assert_array_equal(probs2, expected)
    seen = router.collect(time.time())["functions"]
    assert set(seen) == {VARIANT} and seen[VARIANT]["invocations"] == 2 and seen[VARIANT]["cold_starts"] == 1
    assert seen[VARIANT]["warm_instances"] == 1

    # Prewarm (the plan's warm pool): a second instance of every hop, which stays warm after
    # the prewarm's threads end (the provider forks every worker from one long-lived thread).
    router.partitions.prewarm(VARIANT, 2)
    deadline = time.time() + 120.0
    while not router.partitions.prewarm_done(VARIANT) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    assert router.partitions.warm_instances(VARIANT) == 2
    assert all(s["instances"] == 2 for n, s in router.functions.stats().items() if is_partition_function(n))
    assert router.partitions.store.list_keys() == []
    _, _, cold3, _, _, _ = run(router, batch)
    assert cold3 is False

    # Whole again: requests go to the whole function, the chain is gone, the store is empty.
    router.apply_control({"functions": [record(None)]})
    assert router.partitions.get(VARIANT) is None
    assert router.partitions.store.list_keys() == [] and os.listdir(router.partitions.store.root) == []


def test_a_prewarmed_instance_outlives_the_prewarm(router):
    """The router's prewarm invokes on short-lived threads; the instances it starts stay warm after
    it (the provider forks every worker from one process-lifetime thread)."""
    router.fn_warm_pool[VARIANT] = 1
    router._prewarm()
    deadline = time.time() + 120.0
    while router._prewarming and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    assert router.functions.stats()[VARIANT]["instances"] == 1 and router.functions.has_idle(VARIANT)
