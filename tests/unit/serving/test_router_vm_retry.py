"""A VM that dies mid-request: the router retries the request once on another VM target (the
head or another VM's deployment) while the SLO budget allows, else answers an explicit error;
never a silent drop. Runs the real Router class (no Ray) with in-memory deployment handles."""
import asyncio
import time

import numpy as np
import pytest

from router_harness import build_router

from serving.router_app import Router, _BackendError

VARIANT = "digits-small"


class FakeHandle:
    """A DeploymentHandle of the model deployment: `infer.remote(batch)` -> awaitable
    (probabilities, batch ms, cold). `dead`: raises as a replica on a killed Ray node does."""

    def __init__(self, dead: bool = False, delay_s: float = 0.0):
        self.dead, self.delay_s, self.calls = dead, delay_s, 0
        self.infer = self

    def remote(self, batch, batch_size=None):
        self.calls += 1

        async def run():
            await asyncio.sleep(self.delay_s)
            if self.dead:
                raise RuntimeError("ActorDiedError: the actor died because its node died")
            return np.full((len(batch), 10), 0.1), 5.0, False
        return run()


def make_router(targets: dict) -> Router:
    router = build_router([{"name": "digits", "slo_ms": 200, "min_accuracy": 0.5, "variants": [VARIANT]}],
                          {VARIANT: 0.9}, {"functions": {"enabled": False}, "head_in_process": False},
                          {VARIANT: targets.pop("head")})
    for key, handle in targets.items():
        router.targets[VARIANT][key] = (handle, 1)
    return router


def run(router, slo_ms=200.0, t0=None):
    batch = np.zeros((2, 1, 8, 8), np.float32)
    return asyncio.run(router._run(VARIANT, batch, slo_ms, time.perf_counter() if t0 is None else t0))


def test_request_on_a_dead_vm_is_retried_on_another_target():
    dead, alive = FakeHandle(dead=True), FakeHandle()
    router = make_router({"head": alive, "vm-localvm-1": dead})
    router.target_inflight[(VARIANT, "head")] = 3  # the head is busier: the dead VM is picked first
    probs, backend, _, target, _, retried = run(router)
    assert (backend, target, retried) == ("vm", "head", "vm:vm-localvm-1")
    assert probs.shape == (2, 10) and dead.calls == 1 and alive.calls == 1
    assert router.vm_retries.labels(VARIANT)._value.get() == 1
    # bookkeeping is balanced: nothing left counted in flight
    assert router.core.inflight_vm[VARIANT] == 0
    assert router.target_inflight[(VARIANT, "vm-localvm-1")] == 0 and router.target_inflight[(VARIANT, "head")] == 3


def test_no_other_target_gives_an_explicit_error():
    router = make_router({"head": FakeHandle(dead=True)})
    with pytest.raises(_BackendError, match="no other VM target"):
        run(router)
    assert router.core.inflight_vm[VARIANT] == 0


def test_no_retry_past_the_slo_budget():
    dead, alive = FakeHandle(dead=True), FakeHandle()
    router = make_router({"head": dead, "vm-localvm-1": alive})
    # 250 ms already spent of a 200 ms SLO: a retry could not meet it, so the error is explicit
    with pytest.raises(_BackendError, match="no SLO budget left"):
        run(router, slo_ms=200.0, t0=time.perf_counter() - 0.25)
    assert alive.calls == 0


def test_retry_failing_too_gives_an_explicit_error_naming_both():
    router = make_router({"head": FakeHandle(dead=True), "vm-localvm-1": FakeHandle(dead=True)})
    with pytest.raises(_BackendError, match="on head: .*retry on vm-localvm-1"):
        run(router)
    assert router.core.inflight_vm[VARIANT] == 0
