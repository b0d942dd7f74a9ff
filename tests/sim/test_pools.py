"""The simulator's VM queue and function tier against hand-worked cases."""
import numpy as np
import pytest

from controller.config import FunctionPlatformConfig
from controller.sim.function_pool import FunctionPool
from controller.sim.vm_pool import VmPool


def test_vm_pool_no_queue_below_capacity(catalog):
    pool = VmPool("inception", catalog)
    pool.set_fleet({"c5.large": 1}, batch_size=1)
    # c5.large runs 2 concurrent inception batches of 144.1 ms (94.21 ms measured on one vCPU
    # here, x 166.4 / 108.8 GFLOP/s per vCPU): 2 * 1000 / 144.1 = 13.9 requests/s.
    assert pool.mu_per_s == pytest.approx(2 * 1000 / 144.08, rel=1e-3)
    offsets = np.linspace(0.0, 0.99, 4)  # 4/s, far below capacity
    admitted, lat = pool.serve(offsets, max_wait_s=1.0)
    assert admitted.all()
    assert lat.max() < 144.08 * 1.2  # service 144 ms plus a small slot wait, no queueing


def test_vm_pool_queue_grows_and_spills(catalog):
    pool = VmPool("inception", catalog)
    pool.set_fleet({"c5.large": 1}, batch_size=1)
    mu = pool.mu_per_s
    offsets = np.zeros(200)  # a burst of 200 at once
    admitted, lat = pool.serve(offsets, max_wait_s=0.5)
    # A request is admitted while the backlog it finds is <= 0.5 s * mu.
    assert admitted.sum() == int(np.floor(0.5 * mu)) + 1
    assert lat.max() == pytest.approx(1000 * np.floor(0.5 * mu) / mu + pool.service_ms(admitted.sum())
                                      + min(1, admitted.sum() / mu) * pool.service_ms(admitted.sum()) / (2 * pool.slots),
                                      rel=1e-6)
    # Backlog carried to the next second: admitted minus one second's drain.
    assert pool.backlog == pytest.approx(max(0.0, admitted.sum() - mu))


def test_vm_pool_without_vms_admits_nothing(catalog):
    pool = VmPool("inception", catalog)
    admitted, lat = pool.serve(np.array([0.1, 0.2]), 1.0)
    assert not admitted.any() and lat.size == 0


def test_function_cold_then_warm_within_keep_alive(catalog):
    fp = FunctionPlatformConfig(keep_alive_s=600, invoke_overhead_ms=0, container_init_ms=0)
    pool = FunctionPool("squeezenet", catalog, fp)
    pool.configure(2048, warm_pool=0)
    ok, lat, cold, cost = pool.serve(0, np.array([0.0]), limit=1000)
    assert cold.tolist() == [True]
    # squeezenet at 2048 MB (1.16 vCPUs), batch 1: 25.91 ms in the catalog
    assert lat[0] == pytest.approx(25.91 + catalog.model("squeezenet").cold_start_ms)
    for s in range(1, 100):  # the engine calls every second: a cold call of 2.8 s ends in second 2
        pool.serve(s, np.empty(0), limit=1000)
    ok, lat, cold, cost = pool.serve(100, np.array([0.0]), limit=1000)  # 100 s later: still warm
    assert cold.tolist() == [False] and lat[0] == pytest.approx(25.91)
    for s in range(101, 800):
        pool.serve(s, np.empty(0), limit=1000)
    ok, lat, cold, cost = pool.serve(800, np.array([0.0]), limit=1000)  # 700 s idle: reclaimed
    assert cold.tolist() == [True]


def test_a_long_call_ends_during_idle_seconds(catalog):
    """A cold call that runs past its second stops counting as busy once it ends, even when no
    request arrives meanwhile: an arrival after it ends finds it warm and idle."""
    fp = FunctionPlatformConfig(keep_alive_s=600, invoke_overhead_ms=0, container_init_ms=0)
    pool = FunctionPool("resnet200", catalog, fp)
    pool.configure(2048, warm_pool=0)
    _, lat, cold, _ = pool.serve(0, np.array([0.0]), limit=1000)
    assert cold.tolist() == [True] and lat[0] > 2000.0  # the cold call spans idle seconds
    busy_s = int(np.ceil(lat[0] / 1000.0))
    for s in range(1, busy_s + 2):
        pool.serve(s, np.empty(0), limit=1000)
    assert pool._carry_end_s.size == 0
    _, _, cold, _ = pool.serve(busy_s + 2, np.array([0.0]), limit=1000)
    assert cold.tolist() == [False]


def test_function_concurrency_and_throttling(catalog):
    fp = FunctionPlatformConfig(invoke_overhead_ms=0, container_init_ms=0)
    pool = FunctionPool("squeezenet", catalog, fp)
    pool.configure(2048, warm_pool=0)
    # 5 simultaneous arrivals need 5 instances: all cold; with a limit of 3, two are throttled.
    ok, lat, cold, cost = pool.serve(0, np.zeros(5), limit=3)
    assert ok.tolist() == [True, True, True, False, False]
    assert cold.sum() == 3


def test_warm_pool_avoids_cold_starts_and_bills_init(catalog):
    fp = FunctionPlatformConfig()
    pool = FunctionPool("squeezenet", catalog, fp)
    init_usd = pool.configure(2048, warm_pool=4)
    assert init_usd > 0
    ok, lat, cold, cost = pool.serve(0, np.zeros(4), limit=1000)
    assert not cold.any()
    assert pool.prewarm_cost_per_s() > 0


def test_function_cost_is_billed_duration(catalog):
    fp = FunctionPlatformConfig(bill_init=False)
    pool = FunctionPool("squeezenet", catalog, fp)
    pool.configure(2048, warm_pool=1)
    ok, lat, cold, cost = pool.serve(0, np.array([0.5]), limit=1000)
    # 25.91 ms billed per started 1 ms: 26 ms at 2 GB, plus the request fee
    assert cost[0] == pytest.approx(2.0 * 0.026 * 0.0000166667 + 0.0000002)
