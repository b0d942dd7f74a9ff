"""`oracle`: a clairvoyant, feasible policy: the practical floor policies are measured against.

It sees the whole future trace (the shell hands it over through `see_future`; no other policy
gets it) and, per model:
1. turns the rate into VM demand d(t) = lambda(t) / (capacity x target utilization) of the
   cheapest-per-request VM type at an SLO-feasible batch, smoothed by a +-2 s max for the
   Poisson spread inside seconds;
   (each allowed type is planned this way and the cheapest whole plan is kept);
2. cuts d into unit levels (the k-th VM is busy while d > k-1) and each level into busy runs,
   merging gaps shorter than the billing minimum (an idle VM is cheaper than a relaunch then);
3. keeps a VM for a run only if it pays for itself: its cost, boot lead and 60-s minimum
   included, is below what functions would charge for the same requests;
4. launches each kept VM one boot time (mean + 3 sd) before its run, ready at t = 0 for runs
   that start the trace, and terminates it when the run ends;
5. sends the rest to functions at their cheapest SLO-feasible memory, with a warm pool sized
   ahead of time to the coming function concurrency, so users rarely meet a cold start.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from controller.core import LaunchVm, Plan, PolicyError, SetFunctionConfig, TerminateVm
from controller.policies.common import (FixedSelector, cheapest_function_memory, cheapest_vm_sizing,
                                        fixed_models, spill_route, strictest_slo_ms, vm_sizing)

WARM_LOOKAHEAD_S = 60
MAX_TICK_S = 30


@dataclass
class OracleState:
    next_event: int = 0  # index into the sorted event list
    ended: set = field(default_factory=set)


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) indices of the True runs of a boolean array."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


class Oracle:
    name = "oracle"
    clairvoyant = True

    def __init__(self, ctx):
        self.ctx = ctx
        self.p = ctx.config.policy
        self.class_models = fixed_models(ctx)
        self.models = sorted(set(self.class_models))
        self._selector = FixedSelector(self.class_models)
        self.sizing, self.fn = {}, {}
        for j in self.models:
            name = ctx.catalog.models[j].name
            slo = strictest_slo_ms(ctx, self.class_models, j)
            self.sizing[j] = cheapest_vm_sizing(ctx, name, slo, batching=True)
            self.fn[j] = cheapest_function_memory(ctx, name, slo)
            if self.sizing[j] is None and self.fn[j] is None:
                raise PolicyError(f"oracle: nothing serves {name} within {slo:g} ms")
        self.vm_intervals: list[tuple[int, int, int, int]] = []  # (launch_s, end_s, model, level)
        self.fn_conc: dict[int, np.ndarray] = {}

    def selector(self):
        return self._selector

    def _plan_type(self, lam: np.ndarray, sz, fn_cost: float):
        """VM intervals for one instance type, the rate they serve, and the total $ (VMs plus
        functions for the rest)."""
        it = self.ctx.catalog.instance_type(sz.instance_type)
        minimum_s = self.ctx.config.vms.billing_minimum_s
        cap = sz.capacity_per_s * self.p.target_utilization
        smooth = lam.copy()
        for k in (1, 2):
            smooth[k:] = np.maximum(smooth[k:], lam[:-k])
            smooth[:-k] = np.maximum(smooth[:-k], lam[k:])
        d = smooth / cap
        lead = int(math.ceil(it.boot_s_mean + 3 * it.boot_s_std))
        intervals, vm_lam, vm_usd_total = [], np.zeros(len(lam)), 0.0
        for level in range(1, int(math.ceil(d.max())) + 1):
            frac = np.clip(d - (level - 1), 0.0, 1.0)
            starts, ends = _runs(frac > 0)
            if not len(starts):
                break
            # Merge runs separated by less than the billing minimum.
            keep = np.concatenate([[True], starts[1:] - ends[:-1] > minimum_s])
            starts, ends = starts[keep], np.append(ends[np.flatnonzero(keep)[1:] - 1], ends[-1])
            csum = np.concatenate([[0.0], np.cumsum(frac * cap)])
            for a, b in zip(starts.tolist(), ends.tolist()):
                launch = 0 if a == 0 else max(1, a - lead)
                vm_usd = it.on_demand_usd_per_h / 3600.0 * max(minimum_s, b - launch)
                if vm_usd < (csum[b] - csum[a]) * fn_cost:
                    intervals.append((launch, b, level))
                    vm_lam[a:b] += frac[a:b] * cap
                    vm_usd_total += vm_usd
        served = np.minimum(lam, vm_lam)
        fn_usd = float((lam - served).sum()) * (fn_cost if math.isfinite(fn_cost) else 1e9)
        return intervals, served, vm_usd_total + fn_usd

    def see_future(self, counts: np.ndarray, class_shares: np.ndarray) -> None:
        T = len(counts)
        fp = self.ctx.config.functions
        for j in self.models:
            name = self.ctx.catalog.models[j].name
            slo = strictest_slo_ms(self.ctx, self.class_models, j)
            lam = counts * sum(s for s, m in zip(class_shares, self.class_models) if m == j)
            fn = self.fn[j]
            fn_cost = fn[1] if fn else math.inf
            best = ([], np.zeros(T), float((lam.sum()) * fn_cost) if fn else math.inf, None)
            for t in self.ctx.config.vms.instance_types:
                sz = vm_sizing(self.ctx, name, t, slo, batching=True)
                if sz is None:
                    continue
                plan = self._plan_type(lam, sz, fn_cost)
                if plan[2] < best[2]:
                    best = (*plan, sz)
            intervals, vm_lam, _, sz = best
            if sz is not None:
                self.sizing[j] = sz
            self.vm_intervals += [(s, e, j, lvl) for s, e, lvl in intervals]
            if fn is not None:
                dur_s = (self.ctx.catalog.function_profile(name).latency_ms(fn[0]) + fp.invoke_overhead_ms) / 1000.0
                conc = np.maximum(0.0, lam - vm_lam) * dur_s
                need = np.ceil(conc + 3.0 * np.sqrt(conc))
                # The pool must cover the coming minute: a running max over the lookahead.
                ahead = need.copy()
                for k in range(1, WARM_LOOKAHEAD_S):
                    ahead[:-k] = np.maximum(ahead[:-k], need[k:])
                self.fn_conc[j] = ahead.astype(np.int64)
        self.vm_intervals.sort()
        self._ends = sorted((e, j, lvl, s) for s, e, j, lvl in self.vm_intervals)
        self._times = sorted({s for s, *_ in self.vm_intervals} | {e for _, e, *_ in self.vm_intervals})

    def initial_state(self, ctx, rng):
        return OracleState()

    def _rid(self, launch_s, j, level):
        return f"oracle-{j}-{level}-{launch_s}"

    def decide(self, obs, state: OracleState, rng):
        now = int(obs.now_s)
        launches = [LaunchVm(self._rid(s, j, lvl), self.sizing[j].instance_type, self.ctx.catalog.models[j].name)
                    for s, e, j, lvl in self.vm_intervals if s <= now < e and self._rid(s, j, lvl) not in state.ended]
        by_rid = {v.request_id: v.vm_id for v in obs.vms}
        terms = []
        for e, j, lvl, s in self._ends:
            if e > now:
                break
            rid = self._rid(s, j, lvl)
            if rid in by_rid:
                terms.append(TerminateVm(by_rid[rid]))
            state.ended.add(rid)
        launches = [l for l in launches if l.request_id not in by_rid]
        fns, routes = [], []
        for j in self.models:
            name = self.ctx.catalog.models[j].name
            slo = strictest_slo_ms(self.ctx, self.class_models, j)
            fn = self.fn[j]
            if fn:
                conc = self.fn_conc[j]
                fns.append(SetFunctionConfig(name, fn[0], int(conc[min(now, len(conc) - 1)])))
            routes.append(spill_route(name, slo, self.sizing[j],
                                      0.0 if not fn else self.ctx.catalog.function_profile(name).latency_ms(fn[0])))
        i = np.searchsorted(self._times, now, side="right")
        nxt = self._times[i] if i < len(self._times) else math.inf
        return Plan(tuple(launches), tuple(terms), tuple(fns), tuple(routes),
                    float(min(nxt, now + MAX_TICK_S))), state
