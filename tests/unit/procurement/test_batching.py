"""Batch queue: no request is held past the point its SLO can still be met; batches are full or
sent at their deadline; the vectorised planner and the live queue agree; carry-over is exact."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procurement.batching import (BatchQueue, CarryOver, hold_budget_ms, plan_batches)

arrivals = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=0, max_size=60).map(sorted)


def test_hold_budget_worked_example():
    # resnet50 3008 MB batch 8: 220 ms; SLO 300; wait 100 -> 80 ms of queueing fits
    assert hold_budget_ms(300, 100, 220) == pytest.approx(80)
    assert hold_budget_ms(300, 50, 220) == pytest.approx(50)
    assert hold_budget_ms(300, 100, 220, cold_ms=500) == 0.0  # nothing fits: send at once
    assert np.allclose(hold_budget_ms(np.array([250, 400]), 100, 220), [30, 100])


@settings(max_examples=100, deadline=None)
@given(arrivals, st.integers(1, 8), st.floats(0, 200), st.floats(20, 300), st.floats(0, 100),
       st.lists(st.floats(100, 600), min_size=60, max_size=60))
def test_planner_never_holds_a_request_past_its_slo(arr, batch, wait_ms, exec_ms, cold_ms, slos):
    a = np.array(arr)
    slo = np.array(slos[:a.size])
    hold_s = hold_budget_ms(slo, wait_ms, exec_ms, cold_ms) / 1000.0
    plan = plan_batches(a, hold_s, batch)  # infinite horizon: everything is sent
    assert plan.num_dispatched == a.size and plan.size.sum() == a.size
    assert np.all(plan.size >= 1) and np.all(plan.size <= batch)
    wait = plan.wait_s
    assert np.all(wait >= -1e-12)
    assert np.all(wait <= hold_s + 1e-9)  # never past its hold budget (so never past a meetable SLO)
    feasible = slo - exec_ms - cold_ms >= 0
    lat = wait * 1000 + exec_ms + cold_ms  # a batched request's end-to-end latency (INFless)
    assert np.all(lat[feasible] <= slo[feasible] + 1e-6)
    assert np.all(wait <= wait_ms / 1000.0 + 1e-9)
    # a batch that is not full was sent at its deadline: some member's budget ran out then
    for t, k, f in zip(plan.dispatch_s, plan.size, plan.first):
        members = slice(f, f + k)
        if k < batch:
            assert np.isclose(t, np.min(a[members] + hold_s[members]))
        else:
            assert np.isclose(t, a[f + k - 1])


@settings(max_examples=80, deadline=None)
@given(arrivals, st.integers(1, 6), st.floats(0, 300), st.floats(10, 250))
def test_live_queue_matches_planner(arr, batch, wait_ms, exec_ms):
    slo_ms = 300.0
    hold_s = hold_budget_ms(slo_ms, wait_ms, exec_ms) / 1000.0
    plan = plan_batches(np.array(arr), hold_s, batch)
    q = BatchQueue(batch, wait_ms, exec_ms)
    sent = []
    for i, t in enumerate(arr):
        due = q.next_due_s()
        if due is not None and due < t:
            sent += q.due(due)
        sent += q.offer(t, i, slo_ms)
    while q.next_due_s() is not None:
        sent += q.due(q.next_due_s())
    assert [b.size for b in sent] == plan.size.tolist()
    assert np.allclose([b.dispatch_s for b in sent], plan.dispatch_s)
    assert [r for b in sent for r in b.requests] == list(range(len(arr)))
    assert np.allclose([w for b in sent for w in b.wait_ms], plan.wait_s * 1000)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 3 * 1024 - 1), max_size=80).map(sorted), st.integers(1, 8), st.integers(0, 400))
def test_windows_with_carry_over_equal_one_pass(ticks, batch, hold_ticks):
    # times on a 1/1024 s grid: shifting by whole windows is exact in binary floating point, so
    # ties (an arrival exactly at a batch's close) resolve the same way in both runs
    a = np.array(ticks, dtype=float) / 1024
    hold_s = hold_ticks / 1024
    whole = plan_batches(a, hold_s, batch)
    carry, dispatch, waits = CarryOver(), [], []
    for w in range(4):  # one-second windows, the last one long enough to drain
        inside = a[(a >= w) & (a < w + 1)] - w
        p = plan_batches(inside, hold_s, batch, horizon_s=1.0 if w < 3 else np.inf, carry=carry)
        dispatch += (p.dispatch_s + w).tolist()
        waits += p.wait_s.tolist()
        carry = p.carry
    assert len(carry) == 0
    assert np.allclose(dispatch, whole.dispatch_s)
    assert np.allclose(waits, whole.wait_s)


def test_full_batch_goes_at_last_arrival_and_tail_at_deadline():
    a = np.array([0.0, 0.01, 0.02, 0.5])
    p = plan_batches(a, 0.1, 3)
    assert p.size.tolist() == [3, 1]
    assert np.allclose(p.dispatch_s, [0.02, 0.6])
    assert np.allclose(p.wait_s, [0.02, 0.01, 0.0, 0.1])


def test_carry_over_keeps_unsent_batch():
    p = plan_batches(np.array([0.95, 0.97]), 0.1, 4, horizon_s=1.0)
    assert p.num_dispatched == 0 and len(p.carry) == 2
    assert np.allclose(p.carry.arrival_s, [-0.05, -0.03])
    nxt = plan_batches(np.array([0.01]), 0.1, 4, horizon_s=1.0, carry=p.carry)
    assert nxt.size.tolist() == [3] and np.isclose(nxt.dispatch_s[0], 0.05)


def test_live_queue_sends_at_once_when_no_wait_fits():
    q = BatchQueue(8, wait_ms=100, exec_ms=250, cold_ms=100)
    out = q.offer(5.0, "r", slo_ms=300)  # 300 - 250 - 100 < 0
    assert len(out) == 1 and out[0].wait_ms == (0.0,) and len(q) == 0


def test_bad_arguments():
    with pytest.raises(ValueError):
        plan_batches(np.array([0.2, 0.1]), 0.1, 2)
    with pytest.raises(ValueError):
        BatchQueue(0, 10, 10)
