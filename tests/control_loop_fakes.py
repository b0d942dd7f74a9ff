"""In-memory stand-ins for the router's control side door (`collect`, `apply_control`), shared by
the control-loop tests (tests/unit/serving, tests/contract)."""
import copy

import numpy as np

from serving.telemetry import IntervalStats

MODELS = ["digits-large", "digits-medium", "digits-small"]


class _Call:
    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args):
        value = self.fn(*args)

        class Done:
            def result(self, timeout_s=None):
                if isinstance(value, Exception):
                    raise value
                return value
        return Done()


class FakeRouter:
    """The router's two control methods over a real IntervalStats fed `rate_per_s` requests a
    second of app `digits`. Like the real router, each request's variant is the pick of the
    selector the control loop hands over (`apply_control({"selector": ...})`, sent by `start`);
    before one arrives, the app's first variant (`variant`), as the router does."""

    def __init__(self, rate_per_s: int, variant: str = MODELS[0]):
        self.rate_per_s, self.variant, self.fail = rate_per_s, variant, False
        self.t = IntervalStats(["digits"], MODELS, 0.0)
        self.updates = []
        self.selector, self._models, self._rng = None, MODELS, np.random.default_rng(0)
        self.collect = _Call(self._collect)
        self.apply_control = _Call(self._apply)

    def _apply(self, update: dict) -> None:
        if "selector" in update:
            sel = update["selector"]
            self.selector, self._models = copy.deepcopy(sel["selector"]), list(sel["models"])
        self.updates.append(update)

    def _picks(self) -> list[str]:
        if self.selector is None or not self.rate_per_s:
            return [self.variant] * self.rate_per_s
        return [self._models[int(i)] for i in self.selector.select(0, self.rate_per_s, self._rng)]

    def _collect(self, now_s):
        if self.fail:
            return RuntimeError("router unreachable")
        for sec in range(int(self.t.start_s), int(now_s)):
            for model in self._picks():
                self.t.arrival(sec + 0.5, "digits", model)
                self.t.outcome(model, "vm", 5.0, True)
        d = self.t.take(now_s)
        d.update(classes=["digits"], models=MODELS, backlog={m: 0 for m in MODELS}, functions={})
        return d
