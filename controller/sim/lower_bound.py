"""`lower-bound`: the LP relaxation of the offline optimum's problem, per second: a floor no
policy that serves every request within its SLO can go below in the simulator.

The problem (one query class; per-second demand d_s from the trace, s = 0..T-1):
  y_s >= 0   VM capacity ready at second s (req/s; fractional VMs)
  z_s >= y_s - y_(s-1), >= 0     capacity that became ready at s (at a warm start the capacity
                                 of second 0 is ready at once, else z_0 >= y_0)
  P_s >= y_s,  P_s >= sum_{s-m < s' <= s} z_s'   capacity paid at s (m = minimum - shortest boot)
  f_s in [0, d_s]                requests of second s served by functions
  (d_s - f_s) <= (1 + slo) y_s + 1                           one second through the VM queue
  (d_s - f_s) + (d_(s+1) - f_(s+1)) <= y_s + (1 + slo) y_(s+1) + 1   two seconds through it
  minimise a sum_s (P_s + boot z_s) + f sum_s f_s

Why no policy run through the simulator can cost less (every request within its SLO, one class):
1. VM capacity. A VM of type t serving variant m within the SLO runs batches whose latency fits
   the SLO (a longer batch serves none of its requests in time), so it drains at most
   cap(m, t) = max over such batches of concurrency x batch / latency requests per second.
   All choices share the shortest boot the simulator can draw (5 s x slow_boot_factor) and the
   same billing rules, so every cost term below is proportional to a = price / cap: in the LP,
   capacity of any (variant, type) can be swapped for capacity of the one with the least a at no
   more cost. The floor prices all VM capacity at that least a (per req/s per second).
2. VM cost. A VM's bill is price x max(minimum, boot + time ready) >= price x (shortest boot +
   max(m, time ready)). Count each VM as paid at every second it is ready and at every second
   within m of becoming ready: the paid count at s is at least both the ready capacity y_s and
   the capacity that became ready within the last m seconds; capacity that became ready at s
   is at least the rise y_s - y_(s-1). A VM terminated before it is ready only adds cost.
3. Queueing. The simulator's VM pool is a fluid queue draining y_s per second; it admits a
   request only while the backlog it finds is at most the route's wait budget (below the SLO)
   times the drain rate, and the backlog grows by one per admitted request, so the backlog left
   at the end of a second is at most slo y_s + 1. What the VMs take in seconds s..s+k is then
   at most their drain over those seconds plus that last backlog (the backlog before s is >= 0):
   the rows for k = 0 and 1 (longer spans only tighten it a little, at a far slower solve).
   Arrivals inside a second are bunched or spread as they come; counting them by the second can
   only let the floor serve more.
4. Functions. Each function-served request pays at least f, the least $ per request of any
   memory, any batch whose execution fits the SLO and the partition planner's chain
   (`reference_options.floor_function_usd`); cold starts and warm-up pings only add.
5. Variants. Every variant meeting the floor enters through 1 and 4, so the floor has every
   freedom any policy has.
Hence every policy's run is a feasible point of this LP at no less cost, and the LP's optimum is
below it. It is also a relaxation of the optimum's MILP (`controller.policies.offline_optimum`):
that plan's VMs have less capacity (target utilisation u, a batch fitting half the SLO: y >= x / u
for its planned capacity x), are launched earlier (a longer lead), are integer and constant over
each window, and cover the queue-effective demand e_s >= d_s / (1 + budget) and
e_s >= (d_(s-1) + d_s) / (2 + budget) (budget <= slo), which gives the one- and two-second rows;
what they leave, (1 + budget)(e_s - x)^+ requests, pays (1 + budget) f per unit in the MILP, at
least f per request here. So lower-bound <= the MILP's value by construction on the VM terms and
on the one-second rows; where functions share a two-second span with VMs the inequality rests
on the capacity margin 1/u and is checked by tests/sim/test_references.py on random traces.

Solved CHUNK_S seconds at a time, each chunk starting with its capacity ready and no backlog:
dropping the rows that couple chunks only lowers the optimum, so the sum stays a floor (and the
full Berkeley trace solves in well under a minute rather than not at all).

Several classes: each is bounded apart and the bounds added, without the start and minimum terms
(VMs shared by classes could start fewer times than the classes' separate fleets), so the sum
stays a floor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix

from controller.policies.reference_options import candidate_models, floor_function_usd, physical_vm_choices


@dataclass(frozen=True)
class ClassBound:
    name: str
    usd: float
    vm: str  # what priced VM capacity
    function: str  # what priced function requests
    status: str


def floor_prices(ctx, cls):
    """(a $ per req/s-second, the VmChoice, f $ per request, the function's variant)."""
    best_vm, best_fn = None, (math.inf, "")
    for m in candidate_models(ctx, cls):
        for ch in physical_vm_choices(ctx, m, cls.slo_ms):
            a = ch.usd_per_s / ch.capacity_per_s
            if best_vm is None or a < best_vm[0]:
                best_vm = (a, ch)
        f = floor_function_usd(ctx, m, cls.slo_ms)
        if f < best_fn[0]:
            best_fn = (f, m)
    return (best_vm or (math.inf, None)) + best_fn


CHUNK_S = 1800  # the LP is solved half an hour at a time (see the module docstring)


def class_bound(demand_per_s: np.ndarray, a_usd: float, boot_s: float, minimum_s: float, fn_usd: float,
                slo_s: float, warm_start: bool = True, starts: bool = True) -> tuple[float, str]:
    """The LP above for one class, CHUNK_S at a time; returns ($, HiGHS status)."""
    d = np.asarray(demand_per_s, dtype=float)
    if len(d) == 0 or d.sum() == 0:
        return 0.0, "empty"
    if not math.isfinite(a_usd) and not math.isfinite(fn_usd):
        return math.inf, "infeasible: nothing serves this class"
    total, statuses = 0.0, set()
    for c0 in range(0, len(d), CHUNK_S):
        usd, status = _chunk(d[c0:c0 + CHUNK_S], a_usd, boot_s, minimum_s, fn_usd, slo_s,
                             free_start=(c0 > 0 or warm_start), starts=starts)
        total += usd
        statuses.add(status)
    return total, ", ".join(sorted(statuses))


def _chunk(d, a_usd, boot_s, minimum_s, fn_usd, slo_s, free_start: bool, starts: bool):
    T = len(d)
    if d.sum() == 0:
        return 0.0, "optimal"
    has_vm, has_fn = math.isfinite(a_usd), math.isfinite(fn_usd)
    m = max(0, int(math.ceil(minimum_s - boot_s))) if starts else 0
    # Columns: y (T) ready capacity, z (T) capacity that became ready, P (T) capacity paid, f (T).
    oy, oz, oP, of = 0, T, 2 * T, 3 * T
    nv = 4 * T
    s = np.arange(T)
    ent_r, ent_c, ent_v, lo = [], [], [], []

    def put(r, col, v):
        ent_r.append(np.asarray(r)), ent_c.append(np.asarray(col)), ent_v.append(np.broadcast_to(v, np.shape(col)))

    r = 0
    # z_s - y_s + y_(s-1) >= 0 (row 0: z_0 - y_0 >= 0 unless the chunk starts with capacity ready)
    put(r + s, oz + s, 1.0), put(r + s[1:], oy + s[1:], -1.0), put(r + s[1:], oy + s[:-1], 1.0)
    if not free_start:
        put([r], [oy], -1.0)
    lo.append(np.zeros(T))
    r += T
    # P_s - y_s >= 0: ready capacity is paid.
    put(r + s, oP + s, 1.0), put(r + s, oy + s, -1.0)
    lo.append(np.zeros(T))
    r += T
    if m:  # P_s - sum_{s-m < s' <= s} z_s' >= 0: capacity started within m s is paid, ready or not
        put(r + s, oP + s, 1.0)
        for k in range(min(m, T)):
            put(r + s[k:], oz + s[:T - k], -1.0)
        lo.append(np.zeros(T))
        r += T
    # f_s + (1 + slo) y_s >= d_s - 1: one second's VM-served requests (no VM, no queue: the
    # simulator admits nothing to an empty pool).
    one = 1.0 if has_vm else 0.0
    put(r + s, of + s, 1.0), put(r + s, oy + s, 1.0 + slo_s)
    lo.append(d - one)
    r += T
    if T > 1:  # f_s + f_(s+1) + y_s + (1 + slo) y_(s+1) >= d_s + d_(s+1) - 1: two seconds'
        p = s[:-1]
        put(r + p, of + p, 1.0), put(r + p, of + p + 1, 1.0), put(r + p, oy + p, 1.0), put(r + p, oy + p + 1, 1.0 + slo_s)
        lo.append(d[:-1] + d[1:] - one)
        r += T - 1
    A = coo_matrix((np.concatenate(ent_v), (np.concatenate(ent_r), np.concatenate(ent_c))), shape=(r, nv)).tocsr()
    c = np.zeros(nv)
    if has_vm:
        c[oP:oP + T] = a_usd
        c[oz:oz + T] = a_usd * boot_s if starts else 0.0
    c[of:of + T] = fn_usd if has_fn else 0.0
    upper = np.full(nv, np.inf)
    upper[of:of + T] = d if has_fn else 0.0
    if not has_vm:
        upper[oy:oy + T] = 0.0
    # Prices per request-second are ~1e-9 $: below HiGHS's tolerances (1e-7) unless scaled.
    scale = float(np.abs(c).max()) or 1.0
    res = milp(c / scale, bounds=Bounds(np.zeros(nv), upper),
               constraints=LinearConstraint(A, np.concatenate(lo), np.inf), options={"presolve": True})
    if res.x is None:
        return math.inf, f"failed: {res.message}"
    return float(res.fun) * scale, "optimal" if res.status == 0 else f"status {res.status}: {res.message}"


def lower_bound_usd(ctx, class_demand: list[np.ndarray]) -> tuple[float, list[ClassBound]]:
    """The floor for each class's per-second demand (`class_demand[c]`), and what priced it."""
    cfg = ctx.config
    boot = 5.0 * cfg.simulator.faults.slow_boot_factor  # FakeVmProvider: max(5 s, normal) x factor
    several = len(ctx.classes) > 1
    total, how = 0.0, []
    for cls, d in zip(ctx.classes, class_demand):
        a, ch, f, fm = floor_prices(ctx, cls)
        usd, status = class_bound(d, a, boot, cfg.vms.billing_minimum_s, f, cls.slo_ms / 1000.0,
                                  cfg.simulator.warm_start, starts=not several)
        vm = (f"{ch.model} on {ch.instance_type} (batch {ch.batch_size}, {ch.capacity_per_s:,.0f} req/s) at "
              f"${a * 1e6:.4g} per million requests at full use") if ch else "no VM fits the SLO"
        fn = f"{fm} at ${f * 1e6:.4g} per million requests" if math.isfinite(f) else "no function fits the SLO"
        how.append(ClassBound(cls.name, usd, vm, fn, status))
        total += usd
    return total, how
