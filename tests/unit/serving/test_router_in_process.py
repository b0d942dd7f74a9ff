"""The router running the head's replicas itself (serving.head_in_process, the default): the real
Router class (no Ray) with the real digits-small model in-process, beside an in-memory VM handle."""
import asyncio
import time

import numpy as np

from router_harness import FakeVmHandle, build_router, close_router

VARIANT = "digits-small"


def make_router():
    return build_router([{"name": "digits", "slo_ms": 200, "min_accuracy": 0.5, "variants": [VARIANT]}],
                        {VARIANT: 0.9}, {"functions": {"enabled": False}}, {})


def test_the_head_target_runs_in_the_router_and_batches_concurrent_requests():
    router = make_router()
    local = router.local_models[VARIANT]
    assert router.targets[VARIANT]["head"][0] is local
    # The target choice divides by the batches the in-process model runs at once.
    opts = router.settings.options_for(VARIANT)
    assert router.targets[VARIANT]["head"][1] == local.replicas == max(1, opts.min_replicas, opts.max_replicas)

    async def go():
        batch = np.zeros((1, 1, 8, 8), np.float32)
        return await asyncio.gather(*(router._run(VARIANT, batch, 200.0, time.perf_counter()) for _ in range(4)))
    results = asyncio.run(go())
    for probs, backend, cold, target, fn_usd, retried in results:
        assert (backend, target, fn_usd, retried) == ("vm", "head", 0.0, None) and cold is False
        assert probs.shape == (1, 10) and abs(float(probs.sum()) - 1.0) < 1e-4
    assert local._batcher.batches < 4  # the four callers shared batches
    assert router.core.inflight_vm[VARIANT] == 0 and router.core.batch_ms[VARIANT] is not None
    close_router(router)


def test_vm_targets_stay_on_handles_and_the_least_loaded_target_wins_head_first_on_ties():
    router = make_router()
    vm = FakeVmHandle(classes=10)
    router.targets[VARIANT]["vm-localvm-1"] = (vm, 1)
    assert router._pick_target(VARIANT)[0] == "head"  # a tie: the head first
    router.target_inflight[(VARIANT, "head")] = 2
    batch = np.zeros((2, 1, 8, 8), np.float32)
    probs, backend, _, target, _, _ = asyncio.run(router._run(VARIANT, batch, 200.0, time.perf_counter()))
    assert (backend, target, vm.calls) == ("vm", "vm-localvm-1", 1) and probs.shape == (2, 10)
    close_router(router)


def test_not_ready_until_the_standing_head_models_are_loaded():
    """/v2/health/ready and model ready (REST and gRPC) say 503 / false while a standing variant
    still loads in the background, as a Serve replica is not ready before its model is."""
    router = make_router()
    local = router.local_models[VARIANT]
    deadline = time.monotonic() + 60
    while not local.loaded and time.monotonic() < deadline:
        time.sleep(0.1)
    assert local.loaded and not local.lazy
    assert router.ready() == {"ready": True}
    model, local._model = local._model, None  # as if still loading
    try:
        assert router.ready().status_code == 503
        assert router.ServerReady(None).ready is False
    finally:
        local._model = model
    assert router.ServerReady(None).ready is True
    close_router(router)
