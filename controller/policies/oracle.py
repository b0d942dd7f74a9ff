"""`oracle`: the offline optimum, run through the simulator like any policy.

It sees the whole future trace (the shell hands it over through `see_future`; no other policy
gets it) and, per query class:
1. for every variant the class may be served by (its pinned `model`, else every variant meeting
   its floor) and every VM batch size (`reference_options.planned_vm_groups`: the simulator's
   pool runs one per model), solves the LP relaxation of the time-indexed MILP of
   `controller.policies.offline_optimum` (VM counts per type per billing window, launched one
   boot lead ahead and billed from launch, functions for the rest);
2. solves the MILPs in order of their relaxations, stopping once a relaxation is no cheaper than
   the best plan found (a relaxation is a lower bound of its MILP, so the plan kept is the
   cheapest over every variant and batch size);
3. executes it: each VM launched at its planned time and terminated at the end of its last
   window; requests go to the VMs while the wait fits the SLO, the rest to the function at its
   planned memory, its warm pool sized ahead of each window to the planned concurrency (plus
   three Poisson standard deviations) so users rarely meet a cold start.

The MILP's objective, dual bound, gap and status are kept in `solutions` for the report.
Settings (policy extras or keyword arguments): `oracle_window_s` (default: 60 s, coarser on
traces so long that more than `MAX_WINDOWS` windows would be needed), `oracle_time_limit_s`
(HiGHS's cap on each solve, one per block of an hour of windows and pass; default 20 s),
`oracle_mip_rel_gap` (default 1e-3).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from controller.core import LaunchVm, Plan, PolicyError, Route, SetFunctionConfig, TerminateVm
from controller.policies.offline_optimum import ClassPlan, Settings, solve_class, vm_intervals
from controller.policies.reference_options import candidate_models, planned_function, planned_vm_groups
from selector.fixed import FixedSelector

MAX_TICK_S = 30
MAX_WINDOWS = 4000  # windows per class beyond which they are made coarser (solve time)


@dataclass
class OracleState:
    launched: set = field(default_factory=set)
    ended: set = field(default_factory=set)


def default_window_s(horizon_s: int, minimum_s: float) -> int:
    """60 s (or the billing minimum, if longer), widened in whole minutes to keep at most
    MAX_WINDOWS windows."""
    base = max(60, int(math.ceil(minimum_s)))
    return base * max(1, math.ceil(horizon_s / (base * MAX_WINDOWS)))


QUEUE_SPAN_S = 5  # seconds of backlog the queue-effective demand looks back over


def queue_effective_demand(d: np.ndarray, budget_s: float, span_s: int = QUEUE_SPAN_S) -> np.ndarray:
    """The VM capacity each second needs when requests may wait `budget_s` in the VM queue:
    e_s = max over k = 0..span of (d_(s-k) + ... + d_s) / (k + 1 + budget_s). Capacity x >= e_s
    at every second keeps the fluid queue's backlog within budget_s x (what the route admits):
    the backlog after s is at most max_k (d_(s-k..s) - (k + 1) x), which is <= budget_s x."""
    d = np.asarray(d, dtype=float)
    csum = np.concatenate([[0.0], np.cumsum(d)])
    s = np.arange(len(d))
    e = d / (1.0 + budget_s)
    for k in range(1, span_s + 1):
        lo = np.maximum(s - k, 0)
        e = np.maximum(e, (csum[s + 1] - csum[lo]) / (s - lo + 1 + budget_s))
    return e


def plan_class(ctx, cls, demand_per_s: np.ndarray, st: Settings) -> tuple[ClassPlan, list[ClassPlan]]:
    """The cheapest plan for one class on one variant at one VM batch size, and every
    relaxation solved on the way (one per variant and batch group).

    Each group plans with the queue-effective demand of its wait budget (the SLO less its
    slowest type's batch latency), pricing a function request per unit of it at (1 + budget)
    times its price: a second whose VMs fall short by e_s - x sends at most (1 + budget)(e_s - x)
    requests to functions."""
    relaxed, demand_of = [], {}
    for model in candidate_models(ctx, cls):
        fn0 = planned_function(ctx, model, cls.slo_ms)
        groups = planned_vm_groups(ctx, model, cls.slo_ms) or ([[]] if fn0 is not None else [])
        for choices in groups:
            service_ms = max((ctx.catalog.vm_profile(model, c.instance_type).latency_at(c.batch_size)
                              for c in choices), default=cls.slo_ms)
            budget_s = max(0.0, cls.slo_ms - service_ms) / 1000.0
            d = queue_effective_demand(demand_per_s, budget_s) if choices else demand_per_s
            fn = fn0 if fn0 is None or not choices else replace(fn0, usd_per_request=fn0.usd_per_request * (1 + budget_s))
            relaxed.append(solve_class(d, model, choices, fn, st, integer=False))
            demand_of[id(relaxed[-1])] = d
    if not relaxed:
        raise PolicyError(f"oracle: no variant serves app {cls.name!r} within {cls.slo_ms:g} ms "
                          f"at accuracy {cls.min_accuracy}")
    best = None
    for lp in sorted(relaxed, key=lambda p: p.objective_usd):
        if best is not None and lp.objective_usd >= best.objective_usd * (1 - 1e-9):
            break
        plan = solve_class(demand_of[id(lp)], lp.model, list(lp.choices), lp.function, st, integer=True)
        if best is None or plan.objective_usd < best.objective_usd:
            best = plan
    return best, relaxed


class Oracle:
    name = "oracle"
    clairvoyant = True

    def __init__(self, ctx, oracle_window_s: int | None = None, oracle_time_limit_s: float | None = None,
                 oracle_mip_rel_gap: float | None = None):
        self.ctx = ctx
        self.p = ctx.config.policy
        extra = dict(self.p.model_extra or {})
        self._window_s = oracle_window_s or extra.get("oracle_window_s")
        self._time_limit_s = float(oracle_time_limit_s or extra.get("oracle_time_limit_s", 20.0))
        self._gap = float(oracle_mip_rel_gap or extra.get("oracle_mip_rel_gap", 1e-3))
        for c in ctx.classes:  # fail fast, before the trace is seen
            if not any(planned_vm_groups(ctx, m, c.slo_ms) or planned_function(ctx, m, c.slo_ms)
                       for m in candidate_models(ctx, c)):
                raise PolicyError(f"oracle: no variant serves app {c.name!r} within {c.slo_ms:g} ms "
                                  f"at accuracy {c.min_accuracy}")
        # Until the future is seen: each class on its first candidate (replaced in see_future).
        self.class_models = [ctx.catalog.model_index[candidate_models(ctx, c)[0]] for c in ctx.classes]
        self._selector = FixedSelector(self.class_models)
        self.solutions: list[ClassPlan] = []
        self.relaxations: list[list[ClassPlan]] = []
        self.intervals: list[tuple[int, int, int, str, str]] = []  # launch, end, id, model, type
        self.routes_: tuple[Route, ...] = ()
        self.fn_pool: dict[str, np.ndarray] = {}  # model -> warm pool per window
        self.fn_memory: dict[str, int] = {}
        self.window_s = 60
        self._seen = None

    def selector(self):
        return self._selector

    def settings(self, horizon_s: int) -> Settings:
        sim = self.ctx.config.simulator
        minimum = self.ctx.config.vms.billing_minimum_s
        w = int(self._window_s) if self._window_s else default_window_s(horizon_s, minimum)
        if w < minimum:
            raise PolicyError(f"oracle_window_s {w} is below the billing minimum {minimum:g} s")
        return Settings(window_s=w, utilization=self.p.target_utilization, warm_start=sim.warm_start,
                        ping_usd_per_s=0.0, time_limit_s=self._time_limit_s, mip_rel_gap=self._gap)

    def see_future(self, counts: np.ndarray, class_shares: np.ndarray) -> None:
        if self.solutions and self._seen is counts:  # solved already (the shell may time the solve first)
            return
        self._seen = counts
        T = len(counts)
        st = self.settings(T)
        self.window_s = st.window_s
        cat = self.ctx.catalog
        models, batch, slo, fn_by_model = [], {}, {}, {}
        pool: dict[str, np.ndarray] = {}
        for c, cls in enumerate(self.ctx.classes):
            demand = counts.astype(float) * float(class_shares[c])
            plan, relaxed = plan_class(self.ctx, cls, demand, st)
            self.solutions.append(plan)
            self.relaxations.append(relaxed)
            m = plan.model
            models.append(cat.model_index[m])
            slo[m] = min(slo.get(m, math.inf), cls.slo_ms)
            for launch, end, k in vm_intervals(plan, T, st.warm_start):
                ch = plan.choices[k]
                self.intervals.append((launch, end, len(self.intervals), m, ch.instance_type))
                batch[m] = min(batch.get(m, 10**9), ch.batch_size)
            if plan.function is not None:
                fn_by_model[m] = plan.function
                a = np.maximum(plan.fn_instances, 0.0)
                # Ping price per instance (1 ms every prewarm interval) is too small to plan
                # with; the pool covers the planned concurrency plus its Poisson spread, and
                # at least one instance: the VMs' own Poisson bursts spill a few requests even
                # where the plan expects none, and one warm instance (its init, as a cold start
                # would bill, and its pings) spares them a cold start past the SLO.
                need = np.maximum(1.0, np.ceil(a + 3.0 * np.sqrt(a) - 1e-9))
                pool[m] = pool.get(m, 0) + need
        self.class_models = models
        self._selector = FixedSelector(models)
        routes = []
        for m in sorted(set(cat.models[j].name for j in models)):
            b = batch.get(m, 1)
            # The spill budget leaves room for the slowest type's batch (all run one batch size).
            service = max((cat.vm_profile(m, t).latency_at(b) for *_x, mm, t in self.intervals if mm == m),
                          default=0.0)
            spill = m in fn_by_model
            routes.append(Route(m, b, max(0.0, slo[m] - service) if spill else None, spill=spill))
        self.routes_ = tuple(routes)
        self.fn_memory = {m: f.memory_mb for m, f in fn_by_model.items()}
        self.fn_pool = {m: np.asarray(v, dtype=np.int64) for m, v in pool.items()}
        self.intervals.sort()
        self._ends = sorted((e, i) for _l, e, i, *_r in self.intervals)
        times = {l for l, *_r in self.intervals} | {e for _l, e, *_r in self.intervals}
        times |= set(range(0, T, st.window_s))
        self._times = sorted(times)

    def initial_state(self, ctx, rng):
        return OracleState()

    def decide(self, obs, state: OracleState, rng):
        now = int(obs.now_s)
        by_rid = {v.request_id: v.vm_id for v in obs.vms}
        launches, terms = [], []
        for launch, end, i, m, t in self.intervals:
            if launch > now:
                break
            rid = f"oracle-{i}"
            if now < end and rid not in state.launched:
                launches.append(LaunchVm(rid, t, m))
                state.launched.add(rid)
        for end, i in self._ends:
            if end > now:
                break
            rid = f"oracle-{i}"
            if rid in state.ended:
                continue
            if rid in by_rid:
                terms.append(TerminateVm(by_rid[rid]))
            state.ended.add(rid)
        w = now // self.window_s
        fns = []
        for m, mem in self.fn_memory.items():
            pool = self.fn_pool[m]
            fns.append(SetFunctionConfig(m, mem, int(pool[min(w, len(pool) - 1)]) if len(pool) else 0))
        i = int(np.searchsorted(self._times, now, side="right"))
        nxt = self._times[i] if i < len(self._times) else math.inf
        return Plan(tuple(launches), tuple(terms), tuple(fns), self.routes_,
                    float(min(nxt, now + MAX_TICK_S))), state
