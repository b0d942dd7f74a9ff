"""Exact branch and bound for one model's VM mix: the planner's MILP without a solver call.

With no fleet cap nothing couples the models, and one model's problem is a bounded integer
covering knapsack with one nested side row (see `vm_planner`):

    minimise    sum_k p_k x_k + q_k max(0, x_k - inc_k)
    subject to  sum_k c_k x_k >= N,   sum_{k on-demand} c_k x_k >= R,   0 <= x_k <= ub_k integer

with q_k the launch penalty of a VM beyond the running ones. HiGHS solves it exactly in about
13 ms (mostly its set-up); this search needs well under one for the 5-15 undominated options a
model has, which is what lets a 10-model tick fit in 20 ms.

The bound at each node is the LP relaxation of what is left, in closed form: in units of
capacity each option is two segments (its running VMs at p/c, new ones at (p+q)/c), the side
row must be met by on-demand units, and with one row nested in the other the cheapest
on-demand units for R, then the cheapest units left for N, is optimal (an exchange argument:
any on-demand unit the side row uses can be swapped for a cheaper unused or spot-row one at no
loss). Options are searched in order of their cheapest $ per capacity, the largest count first,
so the first leaf is the greedy cover and most of the tree is cut by the bound.

`solve_cover` returns None when the search passes `max_nodes` (the caller then asks HiGHS), so
a pathological instance costs a bounded detour, never a wrong plan.
"""
from __future__ import annotations

import math

# A cover within this relative slack of the demand counts as meeting it (HiGHS's own primal
# feasibility tolerance is 1e-7 absolute; planned demands are 1e-3..1e5 req/s).
_COVER_RTOL = 1e-9
# Costs closer than this (relative) are equal: the first found of equal optima is kept.
_COST_RTOL = 1e-12


def solve_cover(cap: list[float], price: list[float], on_demand: list[bool], inc: list[int],
                penalty: list[float], need: float, need_on_demand: float, upper: list[int], *,
                max_nodes: int = 20000) -> list[int] | None:
    """Counts per option of the cheapest cover (see the module docstring), in the caller's
    order; None when the search was cut at `max_nodes` or no cover exists."""
    n = len(cap)
    order = sorted(range(n), key=lambda k: (price[k] / cap[k], -cap[k], k))
    c = [cap[k] for k in order]
    p = [price[k] for k in order]
    od = [bool(on_demand[k]) for k in order]
    ub = [int(upper[k]) for k in order]
    run = [min(int(inc[k]), ub[i]) for i, k in enumerate(order)]
    q = [penalty[k] for k in order]
    need_t = need * (1.0 - _COVER_RTOL)
    need_o = need_on_demand * (1.0 - _COVER_RTOL)

    # Per depth d, the LP segments of options d.. as (unit $, capacity units, on-demand), sorted
    # by unit $ once (the bound walks them; the order never changes below a node).
    segs_from: list[list[tuple[float, float, bool]]] = [[] for _ in range(n + 1)]
    for d in range(n - 1, -1, -1):
        mine = []
        if run[d] > 0:
            mine.append((p[d] / c[d], c[d] * run[d], od[d]))
        if ub[d] > run[d]:
            mine.append(((p[d] + q[d]) / c[d], c[d] * (ub[d] - run[d]), od[d]))
        segs_from[d] = sorted(segs_from[d + 1] + mine)

    def lp_bound(d: int, t: float, r: float) -> float:
        """Cheapest fractional cover of (t, r) by options d..; inf when none exists."""
        if t <= 0.0 and r <= 0.0:
            return 0.0
        segs = segs_from[d]
        cost, used = 0.0, {}
        if r > 0.0:
            for i, (u, w, o) in enumerate(segs):
                if not o:
                    continue
                take = min(w, r)
                cost += u * take
                used[i] = take
                r -= take
                if r <= 0.0:
                    break
            if r > 1e-12 * max(1.0, need):
                return math.inf
            t -= sum(used.values())
        if t > 0.0:
            for i, (u, w, o) in enumerate(segs):
                left = w - used.get(i, 0.0)
                if left <= 0.0:
                    continue
                take = min(left, t)
                cost += u * take
                t -= take
                if t <= 0.0:
                    break
            if t > 1e-12 * max(1.0, need):
                return math.inf
        return cost

    best, best_x, nodes = math.inf, None, 0
    x = [0] * n

    def dfs(d: int, cost: float, t: float, r: float) -> bool:
        """False when the node budget ran out."""
        nonlocal best, best_x, nodes
        nodes += 1
        if nodes > max_nodes:
            return False
        if t <= 0.0 and r <= 0.0:  # covered: the rest stay at zero
            if cost < best * (1.0 - _COST_RTOL):
                best = cost
                best_x = x[:d] + [0] * (n - d)
            return True
        if d == n:
            return True
        ck, pk, qk, rk, ok = c[d], p[d], q[d], run[d], od[d]
        # No more than covers what is left: a count beyond that only adds cost.
        hi = min(ub[d], math.ceil(max(t, r if ok else 0.0) / ck - 1e-12))
        prev = math.inf
        for k in range(hi, -1, -1):
            nc = cost + pk * k + qk * max(0, k - rk)
            nt, nr = t - ck * k, (r - ck * k) if ok else r
            bound = nc + lp_bound(d + 1, nt, nr)
            if bound >= best * (1.0 - _COST_RTOL):
                # The bound is convex in k (an LP's value is convex in its right-hand side, the
                # cost piecewise linear and convex): once it rises past the best, so do all
                # smaller counts.
                if bound > prev:
                    break
                prev = bound
                continue
            prev = bound
            x[d] = k
            if not dfs(d + 1, nc, nt, nr):
                return False
        x[d] = 0
        return True

    if math.isinf(lp_bound(0, need_t, need_o)):  # no cover at all (e.g. the side row without on-demand)
        return None
    if not dfs(0, 0.0, need_t, need_o) or best_x is None:
        return None
    out = [0] * n
    for i, k in enumerate(order):
        out[k] = best_x[i]
    return out
