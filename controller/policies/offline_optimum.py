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
    time_limit_s: float = 60.0
    mip_rel_gap: float = 1e-3


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


def solve_class(demand_per_s: np.ndarray, model: str, choices: list[VmChoice], fn: FunctionChoice | None,
                st: Settings, integer: bool = True) -> ClassPlan:
    """The MILP above (or its LP relaxation with `integer=False`) for one class and variant."""
    d = np.asarray(demand_per_s, dtype=float)
    if st.window_s < 1:
        raise ValueError(f"window_s must be >= 1, got {st.window_s}")
    wins = window_cuts(d, st.window_s)
    W, K = len(wins), len(choices)
    if K == 0 and fn is None:
        raise ValueError(f"{model}: neither a VM nor a function serves it within the SLO")
    lens = np.array([w[0] for w in wins], dtype=float)
    peaks = np.array([w[1] for w in wins])
    ucap = np.array([c.capacity_per_s * st.utilization for c in choices])
    price = np.array([c.usd_per_s for c in choices])
    # Column layout: n (K*W), s (K*W), F (W), A (W), I (W).
    nN, nS = K * W, K * W
    oF, oA, oI = nN + nS, nN + nS + W, nN + nS + 2 * W
    nv = oI + W
    col_n = lambda k, w: k * W + w
    col_s = lambda k, w: nN + k * W + w
    starts = np.arange(W) * st.window_s
    c = np.zeros(nv)
    for k, ch in enumerate(choices):
        lead = np.minimum(ch.lead_s, starts.astype(float)) if st.warm_start else np.full(W, ch.lead_s)
        if st.warm_start:
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

    for k in range(K):  # starts
        for w in range(W):
            e = [(col_s(k, w), 1.0), (col_n(k, w), -1.0)]
            if w:
                e.append((col_n(k, w - 1), 1.0))
            add(e, 0.0)
    for w, (_len, peak, J, S) in enumerate(wins):  # every second covered
        for j in range(len(J)):
            add([(oF + w, 1.0)] + [(col_n(k, w), J[j] * ucap[k]) for k in range(K)], S[j])
        if fn is not None and peak > 0:
            add([(oA + w, 1.0)] + [(col_n(k, w), fn.duration_s * ucap[k]) for k in range(K)], fn.duration_s * peak)
        add([(oI + w, 1.0), (oA + w, -1.0)] + ([(oA + w - 1, 1.0)] if w else []), 0.0)
    A = coo_matrix((vals, (rows, cols)), shape=(r, nv)).tocsr()
    upper = np.full(nv, np.inf)
    dmax = float(peaks.max()) if W else 0.0
    for k in range(K):
        ub = math.ceil(dmax / ucap[k] - 1e-9) if ucap[k] > 0 else 0
        hi = np.full(W, float(ub))
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
               options={"time_limit": st.time_limit_s, "mip_rel_gap": st.mip_rel_gap, "presolve": True})
    if res.x is None:
        raise RuntimeError(f"offline optimum for {model}: HiGHS found no plan ({res.message})")
    x = res.x
    counts = x[:nN].reshape(K, W).T if K else np.zeros((W, 0))
    if integer:
        counts = np.rint(counts)
    bound = getattr(res, "mip_dual_bound", None)
    bound = (float(res.fun) if bound is None or not integer or not np.isfinite(bound) else float(bound)) * scale
    status = "optimal" if res.status == 0 else f"status {res.status}: {res.message}"
    return ClassPlan(model, tuple(choices), fn, st.window_s, counts, x[oA:oA + W].copy(), float(res.fun) * scale,
                     bound, status, integer)


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
