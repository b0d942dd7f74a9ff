"""The plan as the router's routing table: per variant, which VM targets take its requests in
what proportion, at what batch size, and when a request spills to its function instead.

Pure (no Ray, no clock). The control loop builds a `VariantRoute` per variant from the Plan's
`Route` (batch size, `max_vm_wait_ms`, spill on or off) and the targets serving it now: the
head (its share of its capacity, controller/standing.py) and every procured VM whose Serve
app runs the variant. A target's weight is its planned capacity at the planned batch size, what
the simulator's VM pool (controller/sim/vm_pool.py) drains at: `n x capacity_per_s(b)` with `b`
the route's batch capped at the profile's largest.

The router applies the rule the simulator applies (controller/sim/engine.py, VmPool.serve), on
the same fluid queue, fed by the live arrival times:
- the variant's VM targets are one queue draining at mu = the sum of their capacities: a backlog
  that every admitted request adds one to and that drains at mu per second (the Lindley
  recursion of VmPool._serve_capped); a request finding a backlog b expects a wait of b / mu s.
  Not the requests in flight: they include the ones being served (a batch of 4 at 316 ms holds
  4 for 316 ms), which the simulator's wait does not count;
- it is admitted when that wait is at most the budget: `max_vm_wait_ms` when the route spills
  and has one (less what a request's own stricter SLO takes off), else the client timeout (no
  spill on wait); mu = 0 admits nobody;
- not admitted: to the function when the route spills, else dropped (the simulator's drop).
  E.g. mu = 13.7 req/s (one local.small, squeezenet at batch 1), budget 200 ms: a request is
  admitted while the backlog is at most 0.2 x 13.7 = 2.74; four arriving at once: 0, 1, 2 are
  admitted, the fourth (backlog 3) spills.
Admitted requests are spread over the targets by smooth weighted round robin (nginx's): every
pick adds each target's weight to its credit and takes the target with the most, which then
pays the total; over any window the counts follow the weights within one request.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

# The target key of a variant's head replicas: by default the router's in-process LocalModel
# (serving.local_models, `serving.head_in_process`), else the variant's own ModelServer deployment.
HEAD = "head"


@dataclass
class VariantRoute:
    targets: dict[str, float]  # target key (HEAD or a VM app) -> planned capacity, requests/s
    batch_size: int = 1
    max_vm_wait_ms: float | None = None  # the route's budget (None: queue up to the client timeout)
    spill: bool = True
    client_timeout_ms: float = 30_000.0
    slo_ms: float | None = None  # the SLO the budget was planned for (the strictest of the variant's apps)
    _credit: dict[str, float] = field(default_factory=dict, repr=False)
    backlog: float = 0.0  # the fluid queue (requests) at `_last_s`
    _last_s: float | None = field(default=None, repr=False)

    @property
    def mu_per_s(self) -> float:
        return sum(self.targets.values())

    def shares(self) -> dict[str, float]:
        mu = self.mu_per_s
        return {k: (w / mu if mu > 0 else 0.0) for k, w in self.targets.items()}

    def budget_ms(self, slo_ms: float | None = None) -> float:
        """The longest expected wait a request is admitted with (the simulator's `max_wait`). A
        request whose own SLO is stricter than the planned one (`parameters.slo_ms`) has that much
        less: the budget is SLO minus service time, e.g. planned 200 ms leaving 150 ms of wait, a
        request at 120 ms gets 70 ms."""
        if self.spill and self.max_vm_wait_ms is not None:
            tighter = 0.0
            if slo_ms is not None and self.slo_ms is not None and slo_ms < self.slo_ms:
                tighter = self.slo_ms - slo_ms
            return self.max_vm_wait_ms - tighter
        return self.client_timeout_ms

    def expected_wait_ms(self, now_s: float) -> float:
        """The wait a request arriving at `now_s` expects: the drained backlog over mu."""
        mu = self.mu_per_s
        if mu <= 0:
            return math.inf
        return 1000.0 * self._drain(now_s) / mu

    def _drain(self, now_s: float) -> float:
        if self._last_s is not None and now_s > self._last_s:
            self.backlog = max(0.0, self.backlog - self.mu_per_s * (now_s - self._last_s))
        self._last_s = now_s if self._last_s is None else max(self._last_s, now_s)
        return self.backlog

    def admit(self, now_s: float, slo_ms: float | None = None) -> bool:
        """Whether a request arriving at `now_s` goes to the VM targets; an admitted one joins the
        backlog (one request more to drain), a spilled one does not (as in the simulator)."""
        ok = self.expected_wait_ms(now_s) <= self.budget_ms(slo_ms)
        if ok:
            self.backlog += 1.0
        return ok

    def pick(self, exclude: str | None = None) -> str | None:
        """The next target by smooth weighted round robin (None: no target with capacity)."""
        live = {k: w for k, w in self.targets.items() if w > 0 and k != exclude}
        if not live:
            return None
        total = sum(live.values())
        best = None
        for k, w in live.items():
            c = self._credit.get(k, 0.0) + w
            self._credit[k] = c
            if best is None or c > self._credit[best]:
                best = k
        self._credit[best] -= total
        return best

    def to_dict(self) -> dict:
        return {"targets": dict(self.targets), "batch_size": self.batch_size, "max_vm_wait_ms": self.max_vm_wait_ms,
                "spill": self.spill, "client_timeout_ms": self.client_timeout_ms, "slo_ms": self.slo_ms}

    @classmethod
    def from_dict(cls, d: Mapping) -> "VariantRoute":
        return cls(dict(d["targets"]), int(d["batch_size"]), d.get("max_vm_wait_ms"), bool(d.get("spill", True)),
                   float(d.get("client_timeout_ms", 30_000.0)), d.get("slo_ms"))

    def update(self, other: "VariantRoute") -> None:
        """Take `other`'s plan, keeping the round-robin credit of targets that stay."""
        # The backlog stays (the queue does not empty because the plan changed).
        self._credit = {k: c for k, c in self._credit.items() if k in other.targets}
        self.targets, self.batch_size = dict(other.targets), other.batch_size
        self.max_vm_wait_ms, self.spill = other.max_vm_wait_ms, other.spill
        self.client_timeout_ms, self.slo_ms = other.client_timeout_ms, other.slo_ms


def target_capacity_per_s(catalog, model: str, instance_type: str, batch_size: int, count: float = 1.0) -> float:
    """What `count` VMs of a type drain for a model at the planned batch (the simulator's
    VmPool.set_fleet): 0 when the catalog has no profile for them."""
    prof = catalog.vm_profile(model, instance_type)
    if prof is None or count <= 0:
        return 0.0
    b = min(max(1, int(batch_size)), int(prof.batch[-1]))
    return float(count) * float(prof.capacity_per_s(b))


def routing_table(plan_routes, serving: Mapping[str, Mapping[str, tuple[str, float]]], catalog,
                  client_timeout_s: float, slo_ms: Mapping[str, float] | None = None) -> dict[str, VariantRoute]:
    """Per variant with a planned Route: its targets' capacities and the route's rule.

    serving: variant -> {target key: (instance type, count)}: the head with its share as count,
    each procured VM's Serve app with 1. slo_ms: variant -> the SLO its budget was planned for."""
    out = {}
    for r in plan_routes:
        targets = {key: target_capacity_per_s(catalog, r.model, itype, r.vm_batch_size, n)
                   for key, (itype, n) in serving.get(r.model, {}).items()}
        out[r.model] = VariantRoute(targets, int(r.vm_batch_size), r.max_vm_wait_ms, bool(r.spill),
                                    client_timeout_s * 1000.0, (slo_ms or {}).get(r.model))
    return out
