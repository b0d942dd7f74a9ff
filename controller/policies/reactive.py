"""Reactive baselines: `vm-reactive` (a standard autoscaler: VMs only, sized on the current load
with headroom, scaled down after a delay) and `spock` (the same VMs, with overflow spilled to
functions while VMs boot, as Spock does).

Both in their strongest standard form (issue 18): each class served by the variant (among those
it may be served by: its pinned `model`, else every one meeting its floor) and on the instance
type an operator would configure such an autoscaler with, the one cheapest per request at the
planned utilisation, batching as the serving system does (the largest batch within half the SLO).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from controller.core import LaunchVm, Plan, PolicyContext, PolicyError, Route, SetFunctionConfig, TerminateVm
from controller.policies.reference_options import candidate_models
from procurement.sizing import cheapest_vm_sizing, demand_by_model, spill_route, strictest_slo_ms, terminate_order
from selector.fixed import FixedSelector

RATE_WINDOW_S = 30  # the load a reactive autoscaler reacts to: the mean of the last 30 s


@dataclass
class ScalerState:
    launched: int = 0  # for deterministic request ids
    surplus_since_s: dict = field(default_factory=dict)  # model -> when the fleet became surplus
    recent: np.ndarray | None = None  # last RATE_WINDOW_S seconds of demand per model


def vm_baseline_models(ctx: PolicyContext, policy: str) -> list[int]:
    """Each class's variant for a VM baseline: of those it may be served by, the one whose
    cheapest SLO-feasible VM (batching, half the SLO for the batch) is cheapest per request."""
    out = []
    for c in ctx.classes:
        best = None
        for m in candidate_models(ctx, c):
            s = cheapest_vm_sizing(ctx, m, c.slo_ms, batching=True)
            if s is None:
                continue
            usd = ctx.catalog.instance_type(s.instance_type).on_demand_usd_per_h / s.capacity_per_s
            if best is None or usd < best[0]:
                best = (usd, ctx.catalog.model_index[m])
        if best is None:
            raise PolicyError(f"{policy}: no model meets accuracy {c.min_accuracy} within {c.slo_ms:g} ms "
                              f"on an allowed instance type (app {c.name!r})")
        out.append(best[1])
    return out


class VmReactive:
    name = "vm-reactive"
    clairvoyant = False
    spill = False

    def __init__(self, ctx: PolicyContext):
        self.ctx = ctx
        self.p = ctx.config.policy
        self.class_models = vm_baseline_models(ctx, self.name)
        self.models = sorted(set(self.class_models))
        self.slo = {j: strictest_slo_ms(ctx, self.class_models, j) for j in self.models}
        self.sizing = {}
        for j in self.models:
            name = ctx.catalog.models[j].name
            s = cheapest_vm_sizing(ctx, name, self.slo[j], batching=True)
            if s is None:
                raise PolicyError(f"{self.name}: {name} cannot meet {self.slo[j]:g} ms on any allowed type")
            self.sizing[j] = s
        self._selector = FixedSelector(self.class_models)

    def selector(self):
        return self._selector

    def initial_state(self, ctx, rng) -> ScalerState:
        return ScalerState()

    def load_estimate(self, demand: np.ndarray, j: int, now_s: float) -> float:
        return float(demand[-RATE_WINDOW_S:, j].mean()) if len(demand) else 0.0

    def decide(self, obs, state: ScalerState, rng):
        n_models = len(self.ctx.catalog.models)
        demand = demand_by_model(obs.class_arrivals_per_s, self.class_models, n_models)
        if state.recent is not None:
            demand = np.vstack([state.recent, demand])
        state.recent = demand[-600:]
        launches, terms = [], []
        minimum_s = self.ctx.config.vms.billing_minimum_s
        for j in self.models:
            model = self.ctx.catalog.models[j].name
            s = self.sizing[j]
            rate = self.load_estimate(state.recent, j, obs.now_s)
            cap = s.capacity_per_s * self.p.target_utilization
            desired = max(1, math.ceil(rate * (1.0 + self.p.headroom) / cap))
            mine = [v for v in obs.vms if v.model == model]
            ready = [v for v in mine if v.state == "ready"]
            if desired > len(mine):
                for _ in range(desired - len(mine)):
                    state.launched += 1
                    launches.append(LaunchVm(f"{self.name}-{state.launched}", s.instance_type, model))
                state.surplus_since_s.pop(j, None)
            elif desired < len(ready):
                since = state.surplus_since_s.setdefault(j, obs.now_s)
                if obs.now_s - since >= self.p.scale_down_delay_s:
                    for v in terminate_order(mine, obs.now_s, minimum_s)[: len(mine) - desired]:
                        terms.append(TerminateVm(v.vm_id))
                    state.surplus_since_s.pop(j, None)
            else:
                state.surplus_since_s.pop(j, None)
        return Plan(tuple(launches), tuple(terms), self.functions(obs), self.routes(),
                    obs.now_s + self.p.control_interval_s), state

    def functions(self, obs):
        return ()

    def routes(self):
        return tuple(Route(self.ctx.catalog.models[j].name, self.sizing[j].batch_size, None, spill=False)
                     for j in self.models)


class Spock(VmReactive):
    """Reactive VMs; what they cannot serve within the SLO goes to functions at a fixed memory."""

    name = "spock"
    spill = True

    def functions(self, obs):
        if obs.now_s > 0:
            return ()
        return tuple(SetFunctionConfig(self.ctx.catalog.models[j].name, self.p.baseline_function_memory_mb)
                     for j in self.models)

    def routes(self):
        out = []
        for j in self.models:
            name = self.ctx.catalog.models[j].name
            prof = self.ctx.catalog.function_profile(name)
            fn_ms = prof.latency_ms(self.p.baseline_function_memory_mb) if prof else 0.0
            out.append(spill_route(name, self.slo[j], self.sizing[j], fn_ms))
        return tuple(out)
