"""The router's control side door (serving.router_control) and the spill rule it shares with the
partition routes: prewarm of many variants at once finishes (no nested waits in one pool), a
chain being prepared keeps the whole function cold and its memory, a chain whose provider raises
is a failed outcome, and one rule decides whether spilling helps. The real Router class (no
Ray) with an in-memory function provider implementing the provider protocol."""
import dataclasses
import threading
import time

import numpy as np
import pytest
from router_harness import FakeVmHandle, build_router, close_router

from controller.core import SetFunctionConfig
from procurement.partition_planner import PartitionEstimate, PartitionPlan
from procurement.providers.base import InvokeResult
from serving.partition_route import PartitionRoutes, spill_helps

VARIANTS = ["squeezenet", "mobilenet", "resnet18", "resnet50", "inception", "vgg16"]


class FakeFunctions:
    """Functions in memory: each invoke takes `delay_s` and answers ok (or raises for the
    models in `raising`); it records every call."""

    def __init__(self, delay_s=0.05, raising=()):
        self.delay_s, self.raising = delay_s, set(raising)
        self.calls: list[str] = []
        self.deployed: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def deploy(self, model, memory_mb, warm_pool=0, batch_size=1):
        self.deployed[model] = (memory_mb, warm_pool)

    def invoke(self, model, payload, timeout_s):
        with self._lock:
            self.calls.append(model)
        time.sleep(self.delay_s)
        if model in self.raising:
            raise OSError(f"{model}: pipe closed")
        return InvokeResult(True, np.zeros((1, 10), np.float32), 1.0, 1.0, False)

    def stats(self):
        return {}

    def has_idle(self, model):
        return False

    def cold_start_ms(self, model):
        return None

    def reset_peaks(self):
        pass

    def close(self):
        pass


@pytest.fixture
def router(tmp_path, monkeypatch):
    monkeypatch.setenv("HYBRIDSERVE_CACHE", str(tmp_path / "cache"))
    settings = {"functions": {"enabled": True, "concurrency_limit": 4, "keep_alive_s": 600},
                "control": {"prewarm_functions": False}, "head_in_process": False}
    r = build_router([{"name": "images", "slo_ms": 120_000, "min_accuracy": 0.1, "variants": VARIANTS}],
                     {v: 0.6 for v in VARIANTS}, settings, {v: FakeVmHandle() for v in VARIANTS})
    real = r.functions
    yield r
    r.functions = real
    close_router(r)


def wait_until(cond, timeout_s=10.0) -> bool:
    deadline = time.time() + timeout_s
    while not cond() and time.time() < deadline:
        time.sleep(0.02)
    return cond()


def test_prewarm_of_more_variants_than_threads_finishes(router):
    """Six variants (more than concurrency_limit + 1) warming at once: every invocation runs and
    every variant leaves `_prewarming`, one whose invocations raise included (counted)."""
    fake = router.functions = FakeFunctions(raising={"vgg16"})
    for v in VARIANTS:
        router.fn_warm_pool[v] = 2
    router._prewarm()
    assert wait_until(lambda: not router._prewarming)
    assert sorted(fake.calls) == sorted(VARIANTS * 2)
    assert router.prewarm_errors == 2
    # Every warm-up that ran is billed like a request's call: 1 ms at the function's memory
    # ($0.0000166667 per GB-s) plus $0.20 per million invocations; the raising ones ran nothing.
    billed = router.telemetry.take(time.time())["function_usd"]
    assert sorted(billed) == sorted(v for v in VARIANTS if v != "vgg16")
    for v, usd in billed.items():
        mem_gb = router.fn_memory.get(v, router.settings.functions.memory_mb) / 1024
        assert usd == pytest.approx(2 * (mem_gb * 0.001 * 0.0000166667 + 0.0000002))


def record(variant, plan, memory_mb, warm_pool):
    return dataclasses.asdict(SetFunctionConfig(variant, memory_mb, warm_pool, partition_plan=plan))


def plan_of(variant="squeezenet", memory_mb=3008) -> PartitionPlan:
    parts = tuple(PartitionEstimate(s, e, mb, 10.0, 20.0, 10.0, 1e-6, 300.0, 1.0, False, False)
                  for s, e, mb in ((0, 2, 1024), (2, 10, memory_mb)))
    return PartitionPlan(variant, 3000.0, parts, 40.0, 2e-6, 7)


def test_a_chain_keeps_its_memory_and_pool_and_the_whole_function_stays_cold(router):
    v = "squeezenet"
    fake = router.functions = FakeFunctions()
    control = router.settings.control.model_copy(update={"prewarm_functions": True})
    router.settings = router.settings.model_copy(update={"control": control})
    whole_mb = router.fn_memory[v]
    router.apply_control({"functions": [record(v, plan_of(), 3008, 2)]})
    # Being prepared (or ready): no warm pool for the whole function, its memory unchanged.
    assert router.fn_memory[v] == whole_mb and router.fn_warm_pool[v] == 0
    assert fake.deployed[v] == (whole_mb, 0)
    time.sleep(0.3)
    assert v not in fake.calls
    assert router.partitions.wait_ready(v, 120.0)
    assert router.partitions.status()[v]["warm_pool"] == 2


def test_a_provider_exception_in_a_chain_is_a_failed_outcome(tmp_path):
    fake = FakeFunctions(delay_s=0.0, raising={"squeezenet-part-0-2"})
    routes = PartitionRoutes(fake, env={"HYBRIDSERVE_PARTITION_STORE": str(tmp_path / "store"),
                                        "HYBRIDSERVE_PARTITION_WEIGHTS": str(tmp_path / "weights")})
    routes.apply("squeezenet", plan_of())
    assert routes.wait_ready("squeezenet", 120.0)
    out = routes.infer("squeezenet", np.zeros((1, 3, 224, 224), np.float32))
    assert not out.ok and "pipe closed" in out.error
    assert routes.stats()["squeezenet"]["errors"] == 1 and "pipe closed" in routes.last_error["squeezenet"]


@pytest.mark.parametrize("idle, cold_ms, expected_vm_ms, helps", [
    (True, [5000.0], 10.0, True),           # a free instance
    (False, [None], 10.0, True),            # cold start unknown yet
    (False, [30.0, 40.0], 100.0, True),     # the chain's cold start beats the VM wait
    (False, [60.0, 40.0], 100.0, False),    # ... or not
    (False, [60.0, None], 1.0, True),
])
def test_spill_helps(idle, cold_ms, expected_vm_ms, helps):
    assert spill_helps(idle, cold_ms, expected_vm_ms) is helps
