"""The simulator's VM queue and function tier against hand-worked cases: expected latencies
come from the profile rows (vm_latency.csv, read here as plain CSV) and the arithmetic written
out in each test, never from the pool's own methods."""
import csv
import os

import numpy as np
import pytest

from controller.config import FunctionPlatformConfig
from controller.sim.function_pool import FunctionPool
from controller.sim.vm_pool import VmPool

CATALOG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                           "configs", "catalog")


def _vm_row(model: str, instance_type: str, batch_size: int) -> tuple[float, int]:
    """(latency_ms, max_concurrent_batches) of one row of vm_latency.csv, read as plain CSV."""
    with open(os.path.join(CATALOG_DIR, "vm_latency.csv")) as f:
        for row in csv.DictReader(f):
            if (row["model"], row["instance_type"], int(row["batch_size"])) == (model, instance_type, batch_size):
                return float(row["latency_ms"]), int(row["max_concurrent_batches"])
    raise KeyError((model, instance_type, batch_size))


def test_vm_pool_no_queue_below_capacity(catalog):
    pool = VmPool("inception", catalog)
    pool.set_fleet({"c5.large": 1}, batch_size=1)
    l1_ms, slots = _vm_row("inception", "c5.large", 1)  # 144.08 ms, 2 concurrent batches
    mu_per_s = slots * 1000 / l1_ms  # 13.88 requests/s
    assert pool.mu_per_s == pytest.approx(mu_per_s, rel=1e-9)
    # 4 arrivals 0.33 s apart: each finds the queue empty (one request drains in 1/mu = 72 ms).
    offsets_s = np.linspace(0.0, 0.99, 4)
    admitted, lat_ms = pool.serve(offsets_s, max_wait_s=1.0)
    assert admitted.all()
    # No queueing wait; the batch-1 service time plus half a slot period at utilisation
    # rho = 4 / 13.88: 144.08 + 0.288 * 144.08 / (2 * 2) = 154.46 ms.
    rho = 4 / mu_per_s
    assert lat_ms == pytest.approx(np.full(4, l1_ms + rho * l1_ms / (2 * slots)), rel=1e-9)
    assert lat_ms[0] == pytest.approx(154.46, abs=0.01)


def test_vm_pool_queue_grows_and_spills(catalog):
    pool = VmPool("inception", catalog)
    pool.set_fleet({"c5.large": 1}, batch_size=1)
    l1_ms, slots = _vm_row("inception", "c5.large", 1)
    mu_per_s = slots * 1000 / l1_ms  # 13.88 requests/s
    admitted, lat_ms = pool.serve(np.zeros(200), max_wait_s=1.5)  # a burst of 200 at once
    # Arrival i finds i requests ahead of it, a wait of i / mu s; 1.5 s admits i <= 20.82, so 21
    # requests, and the other 179 spill.
    assert admitted.tolist() == [True] * 21 + [False] * 179
    # Latency of arrival i: i * 144.08 / 2 ms of queue, 144.08 ms of service, and half a slot
    # period at rho = 1 (21 > 13.88): 144.08 / 4 = 36.02 ms. 180.10 ms for the first, 1,620.9
    # for the 21st.
    expected_ms = np.arange(21) * 1000 / mu_per_s + l1_ms + l1_ms / (2 * slots)
    assert lat_ms == pytest.approx(expected_ms, rel=1e-9)
    assert (lat_ms[0], lat_ms[-1]) == pytest.approx((180.10, 1620.90), abs=0.01)
    # One second drains 13.88 of the 21: 7.12 carried into the next second.
    assert pool.backlog == pytest.approx(21 - mu_per_s, rel=1e-9)
    assert pool.backlog == pytest.approx(7.12, abs=0.01)


def test_vm_pool_batches_under_load_and_carries_the_backlog(catalog):
    pool = VmPool("inception", catalog)
    pool.set_fleet({"c5.large": 1}, batch_size=4)
    l1_ms, slots = _vm_row("inception", "c5.large", 1)  # 144.08 ms
    l2_ms, _ = _vm_row("inception", "c5.large", 2)  # 276.68 ms
    l4_ms, slots4 = _vm_row("inception", "c5.large", 4)  # 535.4 ms, 2 concurrent batches
    mu_per_s = slots4 * 4 * 1000 / l4_ms  # full batches of 4: 14.94 requests/s
    assert pool.mu_per_s == pytest.approx(mu_per_s, rel=1e-9)
    admitted, lat_ms = pool.serve(np.zeros(40), max_wait_s=30.0)  # 40 at once, all fit
    assert admitted.all()
    # Batches are as large as what arrives in one batch-1 period per slot:
    # b_eff = 40 * 144.08 ms / 1000 / 2 = 2.88, between the batch-2 and batch-4 rows:
    # 276.68 + (535.4 - 276.68) * 0.88 / 2 = 390.72 ms. rho = 1 (40 > mu): a slot wait of
    # 390.72 / 4 = 97.68 ms. The last arrival waits 39 / 14.94 s = 2,610 ms for the queue.
    b_eff = 40 * l1_ms / 1000 / slots
    svc_ms = l2_ms + (l4_ms - l2_ms) * (b_eff - 2) / (4 - 2)
    expected_ms = np.arange(40) * 1000 / mu_per_s + svc_ms + svc_ms / (2 * slots4)
    assert lat_ms == pytest.approx(expected_ms, rel=1e-9)
    assert lat_ms[-1] == pytest.approx(2610.1 + 390.72 + 97.68, abs=0.2)
    # One second drains mu of the 40: 25.06 are carried into the next second.
    assert pool.backlog == pytest.approx(40 - mu_per_s, rel=1e-9)


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
    fp = FunctionPlatformConfig()  # container init 800 ms billed, pings every 300 s
    pool = FunctionPool("squeezenet", catalog, fp)
    init_usd = pool.configure(2048, warm_pool=4)
    # Each of 4 instances bills one INIT: squeezenet's cold start 2,746 ms (models.csv) + 800 ms
    # container init = 3,546 ms at 2 GB, plus the request fee.
    gb_s_usd, request_usd = 0.0000166667, 0.0000002
    assert init_usd == pytest.approx(4 * (3.546 * 2.0 * gb_s_usd + request_usd), rel=1e-9)
    ok, lat, cold, cost = pool.serve(0, np.zeros(4), limit=1000)
    assert ok.all() and not cold.any()
    assert lat == pytest.approx(np.full(4, 25.91 + fp.invoke_overhead_ms))  # warm: no cold start
    # One 1 ms ping per instance per 300 s: 4 * (0.001 s * 2 GB * price + fee) / 300 s.
    assert pool.prewarm_cost_per_s() == pytest.approx(4 * (0.001 * 2.0 * gb_s_usd + request_usd) / 300, rel=1e-9)


def test_function_cost_is_billed_duration(catalog):
    fp = FunctionPlatformConfig(bill_init=False)
    pool = FunctionPool("squeezenet", catalog, fp)
    pool.configure(2048, warm_pool=1)
    ok, lat, cold, cost = pool.serve(0, np.array([0.5]), limit=1000)
    # 25.91 ms billed per started 1 ms: 26 ms at 2 GB, plus the request fee
    assert cost[0] == pytest.approx(2.0 * 0.026 * 0.0000166667 + 0.0000002)
