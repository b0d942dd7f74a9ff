"""`lambda-only`: every request to a function at a fixed memory; no VMs."""
from __future__ import annotations

from controller.core import Plan, PolicyContext, Route, SetFunctionConfig
from controller.policies.common import FixedSelector, fixed_models


class LambdaOnly:
    name = "lambda-only"
    clairvoyant = False

    def __init__(self, ctx: PolicyContext):
        self.ctx = ctx
        self.class_models = fixed_models(ctx)
        self.models = sorted(set(self.class_models))
        self._selector = FixedSelector(self.class_models)

    def selector(self):
        return self._selector

    def initial_state(self, ctx, rng):
        return None

    def decide(self, obs, state, rng):
        mem = self.ctx.config.policy.baseline_function_memory_mb
        names = [self.ctx.catalog.models[j].name for j in self.models]
        return Plan(functions=tuple(SetFunctionConfig(m, mem) for m in names),
                    routes=tuple(Route(m, 1, max_vm_wait_ms=0.0, spill=True) for m in names),
                    next_tick_s=float("inf")), state
