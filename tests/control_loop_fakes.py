"""In-memory stand-ins for the router's control side door (`collect`, `apply_control`), shared by
the control-loop tests (tests/unit/serving, tests/contract)."""
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
    """The router's two control methods over a real IntervalStats fed `rate_per_s` requests."""

    def __init__(self, rate_per_s: int):
        self.rate_per_s, self.fail = rate_per_s, False
        self.t = IntervalStats(["digits"], MODELS, 0.0)
        self.updates = []
        self.collect = _Call(self._collect)
        self.apply_control = _Call(self.updates.append)

    def _collect(self, now_s):
        if self.fail:
            return RuntimeError("router unreachable")
        for sec in range(int(self.t.start_s), int(now_s)):
            for k in range(self.rate_per_s):
                self.t.arrival(sec + 0.5, "digits", "digits-small")
                self.t.outcome("digits-small", "vm", 5.0, True)
        d = self.t.take(now_s)
        d.update(classes=["digits"], models=MODELS, backlog={m: 0 for m in MODELS}, functions={})
        return d
