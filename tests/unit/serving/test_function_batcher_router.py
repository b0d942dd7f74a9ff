"""The batcher wired into the real Router class (no Ray): the plan's function configurations
reach it through `apply_control`, spilled requests ride one invocation, and the invocation is
billed once, split among its requests."""
import asyncio
import math
import time

import numpy as np
import pytest

from controller.config import FunctionPlatformConfig
from controller.ledger import function_charge_usd
from procurement.providers.base import InvokeResult
from serving.function_batcher import BatchConfig
from router_harness import build_router

from serving.router_app import Router

VARIANT = "digits-small"


class FakeFunctions:
    """The function provider in memory: 10 ms + 5 ms a sample, always a warm instance idle."""

    def __init__(self):
        self.calls: list[int] = []
        self.deployed: dict[str, tuple] = {}

    def deploy(self, model, memory_mb, warm_pool=0, batch_size=1):
        self.deployed[model] = (memory_mb, warm_pool, batch_size)

    def invoke(self, model, payload, timeout_s):
        self.calls.append(payload.shape[0])
        ms = 10.0 + 5.0 * payload.shape[0]
        return InvokeResult(True, np.full((payload.shape[0], 10), 0.1), ms, ms, False)

    def has_idle(self, model):
        return True

    def cold_start_ms(self, model):
        return None

    def stats(self):
        return {m: {"instances": 1} for m in self.deployed}

    def reap(self):
        return 0

    def close(self):
        pass


def make_router(batching: dict | None = None) -> Router:
    settings = {"functions": {"enabled": True, "batching": batching or {}}, "control": {"prewarm_functions": False}}
    router = build_router([{"name": "digits", "slo_ms": 10_000, "min_accuracy": 0.5, "variants": [VARIANT]}],
                          {VARIANT: 0.9}, settings, {VARIANT: None})
    router._stop.set()  # no reaper for the real local provider we replace
    router.functions = FakeFunctions()
    router._init_function_batcher()  # again, over the fake provider
    # A planned route whose budget no wait fits (-1 ms): every request spills.
    router.core.apply_routing({VARIANT: {"targets": {"head": 10.0}, "batch_size": 1, "max_vm_wait_ms": -1.0,
                                         "spill": True}})
    return router


async def spill(router, n: int):
    one = np.zeros((1, 1, 8, 8), np.float32)
    return await asyncio.gather(*(router._run(VARIANT, one, 10_000.0, time.perf_counter()) for _ in range(n)))


def test_plan_configures_batching_and_a_batch_is_billed_once():
    router = make_router()
    router.apply_control({"functions": [
        {"model": VARIANT, "memory_mb": 2048, "warm_pool": 1, "batch_size": 4, "wait_ms": 2000.0,
         "rate_lo_per_s": 0.0, "rate_hi_per_s": math.inf}]})
    assert router.fn_memory[VARIANT] == 2048 and router.functions.deployed[VARIANT] == (2048, 1, 4)
    assert router.fn_batcher.configs(VARIANT) == (BatchConfig(4, 2000.0),)

    async def go():
        await spill(router, 1)  # learns the warm execution of one sample: no hold before
        return await spill(router, 4)
    out = asyncio.run(go())
    assert router.functions.calls == [1, 4]
    pricing = FunctionPlatformConfig()
    whole = function_charge_usd(30.0, 2048, pricing)  # one invocation of 4 samples
    for probs, backend, cold, target, usd, retried in out:
        assert backend == "function" and probs.shape == (1, 10) and retried is None
        assert usd == pytest.approx(whole / 4)
    assert sum(r[4] for r in out) == pytest.approx(whole)  # billed once in total


def test_plan_without_batch_fields_is_the_unbatched_path():
    router = make_router({VARIANT: [{"batch_size": 4, "wait_ms": 500.0}]})
    assert router.fn_batcher.configs(VARIANT)[0].batch_size == 4  # the static setting, until a plan
    router.apply_control({"functions": [{"model": VARIANT, "memory_mb": 1769, "warm_pool": 0}]})
    assert router.fn_batcher.configs(VARIANT) == (BatchConfig(),)
    out = asyncio.run(spill(router, 3))
    assert router.functions.calls == [1, 1, 1]
    assert [r[4] for r in out] == [pytest.approx(function_charge_usd(15.0, 1769, FunctionPlatformConfig()))] * 3


def test_non_uniform_plan_keeps_its_bands_and_the_bottom_memory():
    router = make_router()
    router.apply_control({"functions": [
        {"model": VARIANT, "memory_mb": 3008, "warm_pool": 0, "batch_size": 8, "wait_ms": 100.0,
         "rate_lo_per_s": 4.0, "rate_hi_per_s": math.inf},
        {"model": VARIANT, "memory_mb": 1024, "warm_pool": 2, "batch_size": 2, "wait_ms": 20.0,
         "rate_lo_per_s": 0.0, "rate_hi_per_s": 4.0}]})
    assert router.fn_memory[VARIANT] == 1024 and router.fn_warm_pool[VARIANT] == 2
    assert [c.batch_size for c in router.fn_batcher.configs(VARIANT)] == [2, 8]


def test_a_call_that_ran_and_failed_is_billed():
    """Lambda bills an invocation that errors after running: its billed time reaches the ledger
    (through the interval's function_usd) though it answered no request."""
    router = make_router()
    router.apply_control({"functions": [{"model": VARIANT, "memory_mb": 1769, "warm_pool": 0}]})
    router.functions.invoke = lambda model, payload, timeout_s: InvokeResult(False, None, 40.0, 40.0, False,
                                                                            "error: boom")
    try:
        asyncio.run(spill(router, 1))
    except Exception:
        pass  # retried on a VM target or refused: the bill is what this checks
    billed = router.telemetry.take(time.time())["function_usd"]
    assert billed == {VARIANT: pytest.approx(1769 / 1024 * 0.040 * 0.0000166667 + 0.0000002)}
