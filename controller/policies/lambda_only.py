"""`lambda-only`: every request to a function; no VMs.

By default one request per invocation at a fixed memory (`policy.baseline_function_memory_mb`).
With `function_batching="uniform"` or `"nonuniform"` (INFless), every 5 minutes the exact
configuration solver picks memory, batch size and wait (one configuration, or up to three for
bands of the rate) from the last 10 minutes' per-second arrivals.

Each class is served by the variant (its pinned `model`, else among every one meeting its floor)
that is cheapest per request on a function within its SLO."""
from __future__ import annotations

import numpy as np

from controller.core import Plan, PolicyContext, PolicyError, Route
from controller.policies.reference_options import candidate_models
from procurement.function_plan import check_mode, function_configs
from procurement.sizing import cheapest_function_memory, demand_by_model, strictest_slo_ms
from selector.fixed import FixedSelector

RESOLVE_S = 300.0
HISTORY_S = 600


def function_models(ctx: PolicyContext) -> list[int]:
    """Each class's variant: the one cheapest per request on a function within its SLO."""
    out = []
    for c in ctx.classes:
        costs = [(fn[1], ctx.catalog.model_index[m]) for m in candidate_models(ctx, c)
                 if (fn := cheapest_function_memory(ctx, m, c.slo_ms)) is not None]
        if not costs:
            raise PolicyError(f"lambda-only: no model meets accuracy {c.min_accuracy} within {c.slo_ms:g} ms "
                              f"on a function (app {c.name!r})")
        out.append(min(costs)[1])
    return out


class LambdaOnly:
    name = "lambda-only"
    clairvoyant = False

    def __init__(self, ctx: PolicyContext, function_batching: str | None = None):
        self.ctx = ctx
        extra = dict(ctx.config.policy.model_extra or {})
        self.mode = check_mode(function_batching or extra.get("function_batching", "none"))
        self.class_models = function_models(ctx)
        self.models = sorted(set(self.class_models))
        self._selector = FixedSelector(self.class_models)

    def selector(self):
        return self._selector

    def initial_state(self, ctx, rng):
        return np.zeros((0, len(ctx.catalog.models)))  # recent per-second arrivals per model

    def decide(self, obs, state, rng):
        mem = self.ctx.config.policy.baseline_function_memory_mb
        n_models = len(self.ctx.catalog.models)
        rows = demand_by_model(obs.class_arrivals_per_s, self.class_models, n_models)
        state = np.vstack([state, rows])[-HISTORY_S:]
        fns = []
        for j in self.models:
            name = self.ctx.catalog.models[j].name
            fns += function_configs(self.ctx, name, state[:, j], strictest_slo_ms(self.ctx, self.class_models, j),
                                    self.mode, mem)
        names = [self.ctx.catalog.models[j].name for j in self.models]
        nxt = float("inf") if self.mode == "none" else obs.now_s + RESOLVE_S
        return Plan(functions=tuple(fns),
                    routes=tuple(Route(m, 1, max_vm_wait_ms=0.0, spill=True) for m in names),
                    next_tick_s=nxt), state
