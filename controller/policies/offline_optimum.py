"""The offline optimum: with the whole trace known, the cheapest plan of VMs per billing window
plus functions for the rest, as a time-indexed MILP (`scipy.optimize.milp`, HiGHS). Pure: demand,
choices and settings in, a plan out (no clock, no I/O); `controller.policies.oracle` runs the
plan through the simulator like any policy.

One query class served by one variant (the caller tries the variants, see `plan_class`), its
per-second demand d_s cut into windows w of `window_s` seconds (length len_w; the last may be
shorter). For VM choices k (type and batch, `reference_options.planned_vm_groups`) with
capacity c_k at target utilisation u, price p_k $/s and boot lead L_k:

  n_kw  integer   VMs of k serving through window w
  s_kw  >= n_kw - n_k(w-1), >= 0    VMs of k that start serving at w (s_k0 >= n_k0)
  x_w   = sum_k u c_k n_kw          planned VM capacity in w (req/s)
  F_w   >= sum_{s in w} max(0, d_s - x_w)      requests left to functions in w
  A_w   >= D (max_{s in w} d_s - x_w), >= 0    function instances the peak second needs
                                               (D: one call's duration, s)
  I_w   >= A_w - A_(w-1), >= 0                 instances initialised at w

  minimise  sum_kw p_k (len_w n_kw + lead_kw s_kw) + f sum_w F_w
            + ping sum_w len_w A_w + init sum_w I_w

Every second is covered: what the VMs' planned capacity does not take goes to a function at its
cheapest SLO-feasible memory (f $/request; without a feasible function F = A = 0, so x_w must
reach the window's peak). A VM that starts serving at w is launched lead_kw = L_k (mean + 3 sd
of its boot) earlier and billed from launch: a VM serving windows w1..w2 costs
p (L + len_w1 + ... + len_w2), its billing minimum met since len_w >= 60 s (windows are at least
the minimum). At a warm start the VMs of window 0 are ready at t = 0 (lead 0) and a VM needed at
w with w * window_s < L is launched at t = 0, ready at once (lead w * window_s). Functions are
kept warm by pings (`ping` $/s per instance) so a user meets no cold start; each instance pays
its init once (`init` $), and again only after the pool shrank.

F_w is convex piecewise linear in x_w: with the window's distinct demands v_1 > v_2 > ..., J_j
seconds at or above v_j and S_j their demand, sum_s max(0, d_s - x) = max_j (S_j - J_j x) (and 0),
so the cuts F_w + J_j x_w >= S_j state it exactly: one row per distinct demand value, not one
column per second, which keeps the full Berkeley trace small.

Bounds lose nothing: n_kw <= ceil(max_s d_s / (u c_k)), since clipping an optimum at that count
keeps every window covered by k alone and never adds a start.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix

from controller.policies.reference_options import FunctionChoice, VmChoice


@dataclass(frozen=True)
class Settings:
    window_s: int = 60
    utilization: float = 0.8
    warm_start: bool = True
    ping_usd_per_s: float = 0.0  # keeping one function instance warm
    time_limit_s: float = 20.0  # HiGHS's cap on each solve (one per block and pass)
    mip_rel_gap: float = 1e-3
    block_windows: int = 60  # windows solved at once on long traces (see solve_class)
    overlap_windows: int = 30


@dataclass(frozen=True)
class ClassPlan:
    """The solved plan for one class on one variant."""

    model: str
    choices: tuple[VmChoice, ...]
    function: FunctionChoice | None
    window_s: int
    counts: np.ndarray  # [windows, choices] VMs serving each window
    fn_instances: np.ndarray  # [windows] warm function instances planned
    objective_usd: float
    dual_bound_usd: float  # HiGHS's proof: no plan of this formulation is cheaper
    status: str
    integer: bool

    @property
    def gap(self) -> float:
        return (self.objective_usd - self.dual_bound_usd) / max(self.objective_usd, 1e-12)

    def vm_capacity_per_s(self, utilization: float) -> np.ndarray:
        cap = np.array([c.capacity_per_s for c in self.choices])
        return self.counts @ cap * utilization if len(cap) else np.zeros(len(self.counts))


def window_cuts(d: np.ndarray, window_s: int):
    """Per window: (its length, its peak, (J_j, S_j) for each distinct positive demand)."""
    out = []
    for a in range(0, len(d), window_s):
        x = d[a:a + window_s]
        vals, cnt = np.unique(x[x > 0], return_counts=True)
        vals, cnt = vals[::-1], cnt[::-1]
        J = np.cumsum(cnt)
        S = np.cumsum(cnt * vals)
        out.append((len(x), float(x.max()) if len(x) else 0.0, J.astype(float), S.astype(float)))
    return out


def _solve_block(wins, w0: int, choices, fn, st: Settings, integer: bool, prev_n, prev_a: float | None,
                 dmax: float, time_limit_s: float):
    """The MILP (or LP) over windows w0 .. w0 + len(wins) - 1 of the trace. `prev_n` (counts per
    choice) and `prev_a` (warm instances) are the window before w0, or None for a free
    boundary: the block then starts with whatever serves it already running (a relaxation).
    Returns (counts [windows, choices], instances [windows], objective $, dual bound $, status)."""
    W, K = len(wins), len(choices)
    lens = np.array([w[0] for w in wins], dtype=float)
    ucap = np.array([c.capacity_per_s * st.utilization for c in choices])
    # Column layout: n (K*W), s (K*W), F (W), A (W), I (W).
    nN = K * W
    oF, oA, oI = 2 * nN, 2 * nN + W, 2 * nN + 2 * W
    nv = oI + W
    col_n = lambda k, w: k * W + w
    col_s = lambda k, w: nN + k * W + w
    starts = (w0 + np.arange(W)) * st.window_s
    c = np.zeros(nv)
    for k, ch in enumerate(choices):
        lead = np.minimum(ch.lead_s, starts.astype(float)) if st.warm_start else np.full(W, ch.lead_s)
        if st.warm_start and w0 == 0:
            lead[0] = 0.0
        c[col_n(k, 0):col_n(k, 0) + W] = ch.usd_per_s * lens
        c[col_s(k, 0):col_s(k, 0) + W] = ch.usd_per_s * lead
    if fn is not None:
        c[oF:oF + W] = fn.usd_per_request
        c[oA:oA + W] = st.ping_usd_per_s * lens
        c[oI:oI + W] = fn.init_usd
    rows, cols, vals, lo = [], [], [], []
    r = 0

    def add(entries, lower):
        nonlocal r
        for col, v in entries:
            rows.append(r), cols.append(col), vals.append(v)
        lo.append(lower)
        r += 1

    for k in range(K):  # starts: s_kw >= n_kw - n_k(w-1)
        for w in range(W):
            if w == 0 and prev_n is None and w0 > 0:
                continue  # free boundary
            e = [(col_s(k, w), 1.0), (col_n(k, w), -1.0)]
            if w:
                e.append((col_n(k, w - 1), 1.0))
            add(e, -float(prev_n[k]) if (w == 0 and prev_n is not None) else 0.0)
    # When every choice's capacity is a whole multiple of the smallest (a family priced and sized
    # per vCPU), capacity comes in units and the shortfall is needed only at whole units: the
    # secants of the convex g(N) = sum_s max(0, d_s - N unit) between consecutive N are exact there,
    # far fewer than one cut per distinct demand and a tighter relaxation.
    unit = float(ucap.min()) if K else 0.0
    mult = ucap / unit if unit > 0 else ucap
    units = K > 0 and unit > 0 and np.allclose(mult, np.rint(mult), rtol=0, atol=1e-9)
    for w, (_len, peak, J, S) in enumerate(wins):  # every second covered
        if units and len(J):
            g = lambda x: max([0.0] + [float(Sj - Jj * x) for Jj, Sj in zip(J, S)])
            top = int(math.ceil(peak / unit - 1e-9))
            gs = [g(N * unit) for N in range(top + 1)]
            for N0 in range(top):
                slope = gs[N0 + 1] - gs[N0]
                add([(oF + w, 1.0)] + [(col_n(k, w), -slope * np.rint(mult[k])) for k in range(K)],
                    gs[N0] - slope * N0)
        else:
            for j in range(len(J)):
                add([(oF + w, 1.0)] + [(col_n(k, w), J[j] * ucap[k]) for k in range(K)], S[j])
        if fn is not None and peak > 0:
            add([(oA + w, 1.0)] + [(col_n(k, w), fn.duration_s * ucap[k]) for k in range(K)], fn.duration_s * peak)
        if w or prev_a is not None or w0 == 0:
            add([(oI + w, 1.0), (oA + w, -1.0)] + ([(oA + w - 1, 1.0)] if w else []),
                -float(prev_a) if (w == 0 and prev_a is not None) else 0.0)
    A = coo_matrix((vals, (rows, cols)), shape=(r, nv)).tocsr()
    upper = np.full(nv, np.inf)
    for k in range(K):
        hi = np.full(W, float(math.ceil(dmax / ucap[k] - 1e-9) if ucap[k] > 0 else 0))
        if not st.warm_start:  # a cold start: no VM serves before it could have booted
            hi[starts < choices[k].lead_s] = 0.0
        upper[col_n(k, 0):col_n(k, 0) + W] = hi
    if fn is None:
        upper[oF:] = 0.0
    integrality = np.zeros(nv)
    if integer:
        integrality[:nN] = 1
    # $ per VM-second and per request are 1e-9..1e-4: scaled to at most 1, or HiGHS's tolerances
    # (1e-7) would read the cheaper terms as free.
    scale = float(np.abs(c).max()) or 1.0
    res = milp(c / scale, integrality=integrality, bounds=Bounds(np.zeros(nv), upper),
               constraints=LinearConstraint(A, np.array(lo), np.full(r, np.inf)),
               options={"time_limit": time_limit_s, "mip_rel_gap": st.mip_rel_gap, "presolve": True})
    if res.x is None:
        raise RuntimeError(f"offline optimum: HiGHS found no plan ({res.message})")
    x = res.x
    counts = x[:nN].reshape(K, W).T if K else np.zeros((W, 0))
    if integer:
        counts = np.rint(counts)
    bound = getattr(res, "mip_dual_bound", None)
    bound = (float(res.fun) if bound is None or not integer or not np.isfinite(bound) else float(bound)) * scale
    status = "optimal" if res.status == 0 else f"status {res.status}: {res.message}"
    return counts, x[oA:oA + W].copy(), float(res.fun) * scale, bound, status


def plan_cost_usd(wins, choices, fn, st: Settings, counts: np.ndarray, instances: np.ndarray) -> float:
    """What the formulation charges a whole plan (counts and warm instances per window)."""
    lens = np.array([w[0] for w in wins], dtype=float)
    usd = 0.0
    ucap = np.array([c.capacity_per_s * st.utilization for c in choices])
    x = counts @ ucap if len(choices) else np.zeros(len(wins))
    for k, ch in enumerate(choices):
        n = counts[:, k]
        started = np.maximum(0.0, n - np.concatenate([[0.0], n[:-1]]))
        lead = np.minimum(ch.lead_s, np.arange(len(wins)) * float(st.window_s)) if st.warm_start \
            else np.full(len(wins), ch.lead_s)
        if st.warm_start:
            lead[0] = 0.0
        usd += ch.usd_per_s * float(lens @ n + lead @ started)
    if fn is not None:
        for (_len, _peak, J, S), xw in zip(wins, x):
            usd += fn.usd_per_request * max([0.0] + [float(Sj - Jj * xw) for Jj, Sj in zip(J, S)])
        a = np.asarray(instances, dtype=float)
        usd += st.ping_usd_per_s * float(lens @ a) + fn.init_usd * float(np.maximum(0.0, np.diff(a, prepend=0.0)).sum())
    return usd


def solve_class(demand_per_s: np.ndarray, model: str, choices: list[VmChoice], fn: FunctionChoice | None,
                st: Settings, integer: bool = True) -> ClassPlan:
    """The MILP above (or its LP relaxation with `integer=False`) for one class and variant.

    Up to `st.block_windows` windows it is solved whole. Longer traces are solved block by block
    (the windows are coupled only through starts and the warm pool):
    - the plan: each block solved with the counts the plan has just before it (so a VM kept
      across the boundary pays no second start), over `block_windows + overlap_windows` windows
      of which the first `block_windows` are kept;
    - the proof: each block solved again with a free boundary (what serves it may already be
      running): dropping the rows that couple blocks only lowers the optimum, so the sum of the
      blocks' dual bounds is a lower bound of the whole MILP, and the gap reported is the plan's
      cost against it.
    """
    d = np.asarray(demand_per_s, dtype=float)
    if st.window_s < 1:
        raise ValueError(f"window_s must be >= 1, got {st.window_s}")
    if not choices and fn is None:
        raise ValueError(f"{model}: neither a VM nor a function serves it within the SLO")
    wins = window_cuts(d, st.window_s)
    W, K = len(wins), len(choices)
    dmax = max((w[1] for w in wins), default=0.0)
    B = st.block_windows
    if W <= B + st.overlap_windows:
        counts, inst, obj, bound, status = _solve_block(wins, 0, choices, fn, st, integer, None, None, dmax,
                                                        st.time_limit_s)
        return ClassPlan(model, tuple(choices), fn, st.window_s, counts, inst, obj, bound, status, integer)
    blocks = range(0, W, B)
    per_block_s = st.time_limit_s
    counts, inst = np.zeros((W, K)), np.zeros(W)
    bound, worst = 0.0, "optimal"
    prev_n, prev_a = None, None
    for w0 in blocks:
        lo_c, lo_i, lo_obj, lo_bound, lo_status = _solve_block(wins[w0:w0 + B], w0, choices, fn, st, integer,
                                                               None, None, dmax, per_block_s)
        bound += lo_bound
        if not integer:  # a relaxation is wanted for its bound only
            counts[w0:w0 + len(lo_c)], inst[w0:w0 + len(lo_c)] = lo_c, lo_i
            worst = lo_status if lo_status != "optimal" else worst
            continue
        sub = wins[w0:w0 + B + st.overlap_windows]
        c, i, _obj, _b, status = _solve_block(sub, w0, choices, fn, st, integer, prev_n if w0 else None,
                                              prev_a if w0 else None, dmax, per_block_s)
        keep = min(B, W - w0)
        counts[w0:w0 + keep], inst[w0:w0 + keep] = c[:keep], i[:keep]
        prev_n, prev_a = counts[w0 + keep - 1], float(inst[w0 + keep - 1])
        for st_ in (lo_status, status):
            if st_ != "optimal":
                worst = st_
    obj = plan_cost_usd(wins, choices, fn, st, counts, inst) if integer else bound
    return ClassPlan(model, tuple(choices), fn, st.window_s, counts, inst, obj, min(bound, obj), worst, integer)


def vm_intervals(plan: ClassPlan, horizon_s: int, warm_start: bool = True):
    """The plan as VMs: (launch_s, end_s, choice index), one per level run of each choice's
    count (the k-th VM of a choice serves while the count is >= k), launched one lead ahead."""
    out = []
    W = len(plan.counts)
    for k, ch in enumerate(plan.choices):
        n = plan.counts[:, k].astype(int)
        for level in range(1, int(n.max(initial=0)) + 1):
            on = np.concatenate([[0], (n >= level).astype(np.int8), [0]])
            edges = np.diff(on)
            for w1, w2 in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
                start = w1 * plan.window_s
                launch = 0 if (start == 0 and warm_start) else max(0, int(start - ch.lead_s))
                out.append((launch, min(horizon_s, w2 * plan.window_s) if w2 < W else horizon_s, k))
    return sorted(out)
