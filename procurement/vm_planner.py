"""VM planner: the cheapest integer mix of VMs that covers each model's forecast rate with
SLO-feasible batches, solved as a MILP with `scipy.optimize.milp` (HiGHS).

Per (model m, instance type t, market s) the planner picks one batch size b: among the profiled
batch sizes whose execution latency L(b) plus the queueing allowance fits the SLO,

    L(b) * (1 + queue_allowance) + overhead_ms <= slo_ms,

the one with the largest per-VM capacity c = concurrency(b) * b * 1000 / L(b). The allowance
is for dynamic batching (Clipper, Ray Serve `@serve.batch`): a request that arrives just after
its slot started a batch waits for that batch (up to L(b)) while its own batch fills, then runs
in the next one; with load held under the target utilization the queue stays about one batch
deep, so the worst case is about 2 L(b) (queue_allowance = 1). Example: resnet50 on c5.xlarge
at SLO 300 ms: L(256) = 95.2 ms, 2 x 95.2 = 190 <= 300, so b = 256 and
c = 5 x 256 x 1000 / 95.2 = 13,445 req/s.

Then, with integer x_k VMs per option k = (m, t, s) and price p_k ($/h), see docs/procurement.md:

    minimise    sum_k p_k x_k  (+ launch_penalty * sum_k max(0, x_k - incumbent_k))
    subject to  sum_{k of m} c_k x_k          >= D_m / u                  for each model m
                sum_{k of m, on-demand} c_k x_k >= (1 - spot_max_share) D_m / u   (spot allowed)
                sum_k x_k <= max_instances                                (when given)
                0 <= x_k <= ceil(D_m / (u c_k)), x_k integer

where D_m is the forecast's upper-quantile rate and u the target utilization. The upper bound
on x_k loses nothing: more than ceil(D/(u c)) VMs of one option already cover the model alone.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from procurement.cover_solver import solve_cover
from procurement.planner_types import MixEntry, VmKey, VmMix, VmOption


def feasible_batch(profile, slo_ms: float, *, queue_allowance: float = 1.0,
                   overhead_ms: float = 0.0) -> tuple[int, float, float] | None:
    """(batch, latency_ms, capacity_per_s) with the largest capacity among SLO-feasible batch
    sizes of one VM profile, or None when even batch 1 misses the SLO."""
    # The candidates are the profile's own batch sizes, so its arrays are read directly
    # (the same values latency_at/capacity_per_s interpolate to, without a call per batch).
    batch = np.asarray(profile.batch, dtype=float)
    lat = np.asarray(profile.latency_ms, dtype=float)
    cap = np.asarray(profile.concurrency, dtype=float) * batch * 1000.0 / lat
    ok = lat * (1.0 + queue_allowance) + overhead_ms <= slo_ms
    if not ok.any():
        return None
    i = int(np.flatnonzero(ok)[np.argmax(cap[ok])])  # first (smallest batch) on ties
    return int(batch[i]), float(lat[i]), float(cap[i])


def vm_options(model: str, slo_ms: float, catalog, instance_types: Sequence[str], *,
               allow_spot: bool = False, queue_allowance: float = 1.0,
               overhead_ms: float = 0.0) -> list[VmOption]:
    """Every SLO-feasible way to serve `model`, on-demand first then spot, in type order."""
    out: list[VmOption] = []
    markets = (False, True) if allow_spot else (False,)
    for spot in markets:
        for itype in instance_types:
            prof = catalog.vm_profile(model, itype)
            if prof is None:
                continue
            fb = feasible_batch(prof, slo_ms, queue_allowance=queue_allowance, overhead_ms=overhead_ms)
            if fb is None:
                continue
            price = catalog.instance_type(itype).price_usd_per_h(spot)
            out.append(VmOption(model, itype, spot, fb[0], fb[1], fb[2], price))
    return out


def plan_vm_mix(demand_per_s: Mapping[str, float], slo_ms: Mapping[str, float], catalog,
                instance_types: Sequence[str], *, target_utilization: float = 0.8,
                allow_spot: bool = False, spot_max_share: float = 1.0,
                max_instances: int | None = None, queue_allowance: float = 1.0,
                overhead_ms: float = 0.0, incumbent: Mapping[VmKey, int] | None = None,
                launch_penalty_usd_per_h: float = 0.0, launch_penalty_frac: float = 0.0,
                time_limit_s: float = 1.0, option_cache: dict | None = None) -> VmMix:
    """Cheapest VM mix covering `demand_per_s[m] / target_utilization` for each model.

    `slo_ms[m]` is the model's tightest SLO. `incumbent` (VMs running or booting, per key) and
    `launch_penalty_usd_per_h` make the solver prefer the running mix when another is barely
    cheaper (a new VM costs a boot and a billing minimum); `launch_penalty_frac` adds that share of
    the new VM's own price, so among types of equal $ per capacity a plan that grows by one small
    VM beats one that swaps a running VM for a bigger new one (each new VM pays the same flat
    penalty). A model with demand but no feasible
    option is listed in `uncovered_models`. When `max_instances` makes full cover infeasible,
    the plan covers as much as it can (coverage is relaxed with a steep shortfall price).
    `option_cache`: a dict the caller keeps across ticks (one per catalog) so each model's
    feasible options are computed once per SLO rather than every tick.
    """
    if not 0 < target_utilization <= 1:
        raise ValueError(f"target_utilization must be in (0, 1], got {target_utilization}")
    if not 0 <= spot_max_share <= 1:
        raise ValueError(f"spot_max_share must be in [0, 1], got {spot_max_share}")
    incumbent = dict(incumbent or {})
    models = [m for m in sorted(demand_per_s) if demand_per_s[m] > 0]
    options: list[VmOption] = []
    need: dict[str, float] = {}
    uncovered = []
    for m in models:
        ck = (m, float(slo_ms[m]), tuple(instance_types), allow_spot, queue_allowance, overhead_ms)
        cached = option_cache.get(ck) if option_cache is not None else None
        if cached is None:
            every = vm_options(m, slo_ms[m], catalog, instance_types, allow_spot=allow_spot,
                               queue_allowance=queue_allowance, overhead_ms=overhead_ms)
            cached = (every, _undominated(every))
            if option_cache is not None:
                option_cache[ck] = cached
        every, opts = cached
        # options with running VMs stay in play even when dominated (see _undominated)
        opts = opts + [o for o in every if incumbent.get(o.key, 0) > 0 and o not in opts]
        if not opts:
            uncovered.append(m)
            continue
        options.extend(opts)
        need[m] = demand_per_s[m] / target_utilization
    if not options:
        return _mix([], [], catalog, target_utilization, tuple(uncovered), "empty")
    if max_instances is None:
        # Without a fleet cap nothing couples the models (each row and each penalty column is one
        # model's), so each model's problem is solved alone: the same optimum, by an exact
        # search of well under a millisecond (cover_solver), HiGHS when that search runs long.
        x, statuses = np.zeros(len(options), dtype=int), set()
        for m in need:
            idx = [i for i, o in enumerate(options) if o.model == m]
            xm, st = _solve_one([options[i] for i in idx], need[m], allow_spot, spot_max_share, incumbent,
                                launch_penalty_usd_per_h, time_limit_s, launch_penalty_frac)
            x[idx] = xm
            statuses.add(st)
        status = "optimal" if statuses == {"optimal"} else "; ".join(sorted(statuses))
    else:
        x, status = _solve(options, need, allow_spot, spot_max_share, max_instances, incumbent,
                           launch_penalty_usd_per_h, time_limit_s, launch_penalty_frac)
    return _mix(options, x, catalog, target_utilization, tuple(uncovered), status)


def _undominated(opts: list[VmOption]) -> list[VmOption]:
    """Drop options another option of the same market beats (capacity >= and price <=, one
    strictly), unless VMs of it are running. Exact: swapping each VM of a dominated option for
    the dominating one keeps every constraint (same market, same count, more capacity) at no
    more cost. Fewer columns and far fewer ties make HiGHS's branch and bound much shorter."""
    keep = []
    for o in opts:
        dominated = any(
            p.spot == o.spot and p.capacity_per_s >= o.capacity_per_s and p.price_usd_per_h <= o.price_usd_per_h
            and (p.capacity_per_s > o.capacity_per_s or p.price_usd_per_h < o.price_usd_per_h
                 or (p.instance_type < o.instance_type))  # exact duplicates: keep the first by name
            for p in opts if p is not o)
        if not dominated:
            keep.append(o)
    return keep


# Above this many counts in all (the sum of x_k's upper bounds) the search's median passes HiGHS's
# ~15-25 ms per model (bench/planner_tick.py: 0.4 ms below 50, 6 ms at 100-200, 10-20 ms at 200-400,
# 30 ms at 400-800).
SEARCH_MAX_COUNTS = 400


def _solve_one(options, need, allow_spot, spot_max_share, incumbent, penalty, time_limit_s, penalty_frac):
    """One model's mix: `cover_solver`'s exact search while the counts it ranges over are few, the
    MILP for a larger fleet or when the search gives up."""
    upper = [math.ceil(need / o.capacity_per_s - 1e-9) for o in options]
    if sum(upper) <= SEARCH_MAX_COUNTS:
        inc = [incumbent.get(o.key, 0) for o in options]
        pen = penalty > 0 or penalty_frac > 0
        per_vm = [(penalty + penalty_frac * o.price_usd_per_h) if pen and any(inc) else 0.0 for o in options]
        x = solve_cover([o.capacity_per_s for o in options], [o.price_usd_per_h for o in options],
                        [not o.spot for o in options], inc, per_vm, need,
                        (1 - spot_max_share) * need if allow_spot and spot_max_share < 1 else 0.0, upper)
        if x is not None:
            return np.array(x, dtype=int), "optimal"
    return _solve(options, {options[0].model: need}, allow_spot, spot_max_share, None, incumbent,
                  penalty, time_limit_s, penalty_frac)


def _solve(options, need, allow_spot, spot_max_share, max_instances, incumbent, penalty, time_limit_s,
           penalty_frac=0.0):
    """Build and solve the MILP; returns integer counts per option and a status string.

    Columns: x (one per option, integer), then y (launches beyond the incumbent, when a launch
    penalty applies), then s (unmet demand per model, only under max_instances)."""
    n = len(options)
    models = sorted(need)
    m_of = np.array([models.index(o.model) for o in options])
    price = np.array([o.price_usd_per_h for o in options])
    cap = np.array([o.capacity_per_s for o in options])
    spot = np.array([o.spot for o in options])
    need_v = np.array([need[m] for m in models])
    ub = np.ceil(need_v[m_of] / cap - 1e-9)
    inc = np.array([incumbent.get(o.key, 0) for o in options], dtype=float)
    n_pen = n if ((penalty > 0 or penalty_frac > 0) and inc.any()) else 0
    n_short = len(models) if max_instances is not None else 0
    nv = n + n_pen + n_short
    # Shortfall keeps the problem feasible under max_instances, used only when VMs cannot be
    # had: even 0.01 req/s left unmet costs 10x the dearest option (a per-capacity price would
    # make cheap, high-capacity options look not worth buying for a thin demand).
    c = np.concatenate([price, (penalty + penalty_frac * price)[:n_pen], np.full(n_short, 1e3 * price.max())])
    blocks, lbs, ubs = [], [], []
    cover = np.zeros((len(models), nv))
    cover[m_of, np.arange(n)] = cap
    if n_short:
        cover[np.arange(len(models)), n + n_pen + np.arange(len(models))] = 1.0
    blocks.append(cover), lbs.append(need_v), ubs.append(np.full(len(models), np.inf))
    if allow_spot and spot_max_share < 1:
        od = cover.copy()
        od[:, :n][:, spot] = 0.0
        blocks.append(od), lbs.append((1 - spot_max_share) * need_v), ubs.append(np.full(len(models), np.inf))
    if n_pen:  # y_k >= x_k - inc_k  <=>  x_k - y_k <= inc_k
        pen = np.zeros((n, nv))
        pen[np.arange(n), np.arange(n)] = 1.0
        pen[np.arange(n), n + np.arange(n)] = -1.0
        blocks.append(pen), lbs.append(np.full(n, -np.inf)), ubs.append(inc)
    if max_instances is not None:
        row = np.zeros((1, nv))
        row[0, :n] = 1.0
        blocks.append(row), lbs.append([-np.inf]), ubs.append([float(max_instances)])
    integrality = np.concatenate([np.ones(n), np.zeros(n_pen + n_short)])
    upper = np.concatenate([ub, np.full(n_pen + n_short, np.inf)])
    res = milp(c, integrality=integrality, bounds=Bounds(np.zeros(nv), upper),
               constraints=LinearConstraint(np.vstack(blocks), np.concatenate(lbs), np.concatenate(ubs)),
               options={"mip_rel_gap": 1e-9, "time_limit": time_limit_s, "presolve": True})
    if res.x is None:
        return np.zeros(n, dtype=int), f"failed: {res.message}"
    x = np.rint(res.x[:n]).astype(int)
    return x, "optimal" if res.status == 0 else f"status {res.status}: {res.message}"


def _mix(options, x, catalog, util, uncovered, status) -> VmMix:
    entries = tuple(MixEntry(o, int(k)) for o, k in zip(options, x) if k > 0)
    cap: dict[str, float] = {}
    for e in entries:
        cap[e.option.model] = cap.get(e.option.model, 0.0) + e.option.capacity_per_s * e.count
    cost = sum(e.option.price_usd_per_h * e.count for e in entries)
    return VmMix(entries, float(cost), cap, {m: v * util for m, v in cap.items()}, uncovered,
                 status, util)


def incumbent_counts(vms) -> dict[VmKey, int]:
    """VMs running or booting per key, from the Observation's VmViews (for `incumbent`)."""
    out: dict[VmKey, int] = {}
    for v in vms:
        if v.state in ("booting", "ready"):
            k = (v.model, v.instance_type, bool(v.spot))
            out[k] = out.get(k, 0) + 1
    return out


# The reconciler lives in its own module; re-exported so callers find the planner's API in one place.
from procurement.planner_reconcile import Reconciliation, ReconcileState, reconcile  # noqa: E402,F401
