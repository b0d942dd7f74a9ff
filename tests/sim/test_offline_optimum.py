"""The offline optimum's MILP against brute force on tiny instances, and the LP floor's arithmetic.

The brute force does not share code with the MILP: it enumerates every VM count per choice and
window, prices the plan by the billing rules directly (launch lead, per-window serving, functions
for each second's shortfall) and finds the best warm pool by enumeration too."""
import itertools
import math

import numpy as np
import pytest

from controller.policies.offline_optimum import Settings, solve_class, vm_intervals
from controller.policies.reference_options import FunctionChoice, VmChoice, undominated
from controller.sim.lower_bound import class_bound


def _pool_cost(need, lens, ping, init):
    """Least ping + init cost of a warm pool A_w >= need_w (A_w among the needs, or 0)."""
    levels = sorted(set(need) | {0.0})
    best = math.inf
    for A in itertools.product(levels, repeat=len(need)):
        if any(a < n - 1e-12 for a, n in zip(A, need)):
            continue
        inc = sum(max(0.0, a - b) for a, b in zip(A, (0.0,) + A[:-1]))
        best = min(best, ping * float(np.dot(A, lens)) + init * inc)
    return best


def _brute(d, choices, fn, st):
    W = math.ceil(len(d) / st.window_s)
    wins = [d[w * st.window_s:(w + 1) * st.window_s] for w in range(W)]
    lens = np.array([len(x) for x in wins], dtype=float)
    ucap = [c.capacity_per_s * st.utilization for c in choices]
    top = [math.ceil(max(d) / u) + 1 for u in ucap]  # one beyond the MILP's own upper bound
    best = math.inf
    for flat in itertools.product(*[range(t + 1) for t in top for _ in range(W)]):
        n = np.array(flat).reshape(len(choices), W)
        if not st.warm_start and any(n[k, w] and w * st.window_s < c.lead_s
                                     for k, c in enumerate(choices) for w in range(W)):
            continue
        usd = 0.0
        for k, c in enumerate(choices):
            for w in range(W):
                started = max(0, n[k, w] - (n[k, w - 1] if w else 0))
                lead = (0.0 if w == 0 else min(c.lead_s, w * st.window_s)) if st.warm_start else c.lead_s
                usd += c.usd_per_s * (lens[w] * n[k, w] + lead * started)
        x = [sum(ucap[k] * n[k, w] for k in range(len(choices))) for w in range(W)]
        short = [np.maximum(0.0, wins[w] - x[w]) for w in range(W)]
        if fn is None:
            if any(s.sum() > 1e-9 for s in short):
                continue
        else:
            usd += fn.usd_per_request * sum(s.sum() for s in short)
            need = tuple(fn.duration_s * max(0.0, float(wins[w].max()) - x[w]) for w in range(W))
            usd += _pool_cost(need, lens, st.ping_usd_per_s, fn.init_usd)
        best = min(best, usd)
    return best


@pytest.mark.parametrize("seed", range(12))
def test_milp_equals_brute_force_on_tiny_instances(seed):
    rng = np.random.default_rng(seed)
    T = int(rng.integers(61, 180))
    d = rng.integers(0, 14, T).astype(float) * (rng.random(T) < 0.7)
    choices = [VmChoice("m", f"t{k}", 8, float(rng.uniform(4, 12)), float(rng.uniform(1e-4, 4e-4)),
                        float(rng.integers(0, 120))) for k in range(2)]
    if seed % 3 == 0:  # a family sized per vCPU: twice the capacity at twice the price (the unit cuts)
        choices[1] = VmChoice("m", "t1", 8, 2 * choices[0].capacity_per_s, 2 * choices[0].usd_per_s,
                              float(rng.integers(0, 120)))
    fn = None if seed % 4 == 3 else FunctionChoice("m", 1024, float(rng.uniform(5e-6, 6e-5)),
                                                    float(rng.uniform(0.05, 0.4)), float(rng.uniform(0, 3e-4)))
    st = Settings(window_s=60, utilization=float(rng.uniform(0.6, 1.0)), warm_start=bool(seed % 2),
                  ping_usd_per_s=float(rng.uniform(0, 2e-6)), time_limit_s=30, mip_rel_gap=1e-9)
    plan = solve_class(d, "m", choices, fn, st)
    want = _brute(d, choices, fn, st)
    assert plan.objective_usd == pytest.approx(want, rel=1e-6, abs=1e-10)
    from controller.policies.offline_optimum import plan_cost_usd, window_cuts
    assert plan_cost_usd(window_cuts(d, 60), choices, fn, st, plan.counts, plan.fn_instances) == \
        pytest.approx(want, rel=1e-6, abs=1e-10)
    assert plan.status == "optimal" and plan.gap < 1e-6
    # The relaxation is below the MILP.
    assert solve_class(d, "m", choices, fn, st, integer=False).objective_usd <= plan.objective_usd + 1e-12


def test_plan_as_vms_launches_one_lead_ahead_and_ends_with_its_last_window():
    # Two busy minutes apart: relaunching (a 45 s lead each) beats keeping two VMs idle a minute.
    d = np.array([0.0] * 60 + [20.0] * 60 + [0.0] * 60 + [20.0] * 60)
    ch = VmChoice("m", "t", 8, 10.0, 1e-4, 45.0)
    plan = solve_class(d, "m", [ch], None, Settings(window_s=60, utilization=1.0, mip_rel_gap=1e-9))
    assert plan.counts[:, 0].tolist() == [0, 2, 0, 2]
    assert plan.objective_usd == pytest.approx(1e-4 * (2 * 2 * 60 + 4 * 45))
    assert vm_intervals(plan, len(d)) == [(15, 120, 0), (15, 120, 0), (135, 240, 0), (135, 240, 0)]


def test_undominated_keeps_the_frontier():
    a = VmChoice("m", "a", 8, 10.0, 1.0, 90.0)
    b = VmChoice("m", "b", 8, 9.0, 1.0, 90.0)  # less capacity, same price: dominated
    c = VmChoice("m", "c", 8, 30.0, 2.0, 90.0)  # more capacity for more money: kept
    e = VmChoice("m", "e", 8, 10.0, 1.0, 60.0)  # shorter lead beats a
    assert {x.instance_type for x in undominated([a, b, c, e])} == {"c", "e"}


def test_floor_functions_only_is_every_request_at_the_function_price():
    d = np.array([3.0, 0.0, 5.0, 7.0])
    usd, status = class_bound(d, math.inf, 5.0, 60.0, 2e-6, 0.3)
    assert status == "optimal" and usd == pytest.approx(15 * 2e-6)


def test_floor_queue_carries_a_burst_the_slo_allows():
    # 120 then 80 requests, functions dearer than any VM: the backlog after the first second
    # (120 - y0) may be at most 0.3 y0 + 1, so y0 = 119 / 1.3 rather than 120, and the second
    # second drains that backlog too: y1 = (120 - y0 + 80 - 1) / 1.3.
    d = np.array([120.0, 80.0])
    usd, _ = class_bound(d, 1.0, 0.0, 0.0, 100.0, 0.3)
    y0 = 119 / 1.3
    assert usd == pytest.approx(y0 + (199 - y0) / 1.3, rel=1e-6)


def test_floor_bills_the_minimum_per_start():
    # 10 requests in one second after a quiet start (cold): the least capacity is 9 / 1.1 (the
    # backlog 10 - y at most 0.1 y + 1), kept a second longer to drain at no extra cost, since
    # capacity that starts is paid at least the minimum: 5 s boot + 55 s, 60 s at a = 1.
    d = np.zeros(120)
    d[30] = 10.0
    usd, _ = class_bound(d, 1.0, 5.0, 60.0, 100.0, 0.1, warm_start=False)
    assert usd == pytest.approx(9.0 / 1.1 * 60.0, rel=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_blocks_give_a_plan_within_the_gap_they_prove(seed):
    # Solved in blocks of 3 windows: the plan's cost is what the formulation charges it, at
    # least the whole MILP's optimum, and the bound the blocks prove is at most that optimum.
    rng = np.random.default_rng(100 + seed)
    d = rng.integers(0, 40, 600).astype(float)
    choices = [VmChoice("m", "a", 8, 10.0, 1e-4, 90.0), VmChoice("m", "b", 8, 25.0, 2.3e-4, 80.0)]
    fn = FunctionChoice("m", 1024, 2e-5, 0.2, 1e-4)
    whole = solve_class(d, "m", choices, fn, Settings(window_s=60, mip_rel_gap=1e-9, block_windows=100))
    blocked = solve_class(d, "m", choices, fn, Settings(window_s=60, mip_rel_gap=1e-9, block_windows=3,
                                                        overlap_windows=2))
    assert whole.status == "optimal"
    assert blocked.dual_bound_usd <= whole.objective_usd * (1 + 1e-9)
    assert blocked.objective_usd >= whole.objective_usd * (1 - 1e-9)
    assert blocked.objective_usd <= whole.objective_usd * 1.05  # boundaries cost little
    # The cost reported is the formulation's price of the counts the plan launches.
    from controller.policies.offline_optimum import plan_cost_usd, window_cuts
    st = Settings(window_s=60)
    assert blocked.objective_usd == pytest.approx(
        plan_cost_usd(window_cuts(d, 60), choices, fn, st, blocked.counts, blocked.fn_instances))
