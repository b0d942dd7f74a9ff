"""The router's decisions, without Ray or HTTP: which name is what, which variant serves a query,
VM or function, and what the selector learns from each outcome.

`serving.deployments.Router` (the Ray Serve ingress) owns one `RouterCore` and calls it per
request; this file holds the logic so it can be read (and tested) apart from the transport.

- `resolve(name)`: an app (query class with SLO and accuracy floor) or a model variant.
- `choose(app, slo_ms, min_accuracy)`: the app's selector picks a variant; a request floor
  above the app's own filters the arms by their current accuracy estimate.
- `should_spill(variant, slo_ms)`: the VM deployment's expected latency, from the requests in
  flight there and the recent batch time, against `spill_fraction` of the SLO.
- `finish(...)` / `feedback(...)` / `flush(now_s)`: each served request waits up to
  `feedback_window_s` for its true label, then the selector observes it once (with the label
  or without).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from controller.catalog import ModelVariant
from controller.core import QueryClass
from serving.runtimes import VARIANTS, spec_of
from serving.settings import ServingConfig

# A request waiting for feedback is forgotten after this many newer ones (memory bound).
_MAX_PENDING = 100_000


class UnknownName(LookupError):
    """Neither an app nor a model variant (HTTP 404)."""


VERSION = "0.1.0"  # the server version both protocols report


class RequestFailure(Exception):
    """An infer that ends in an HTTP error status (mapped to a gRPC code for gRPC)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class NoModel(Exception):
    """No variant meets the request's constraints (HTTP 422); `field` names the constraint."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class App:
    name: str
    slo_ms: float
    min_accuracy: float
    variants: tuple[str, ...]


class _ModelList:
    """The selector's view of one app's arms (the `catalog` argument of make_selector)."""

    def __init__(self, names: list[str], accuracy: dict[str, float]):
        self.models = [ModelVariant(n, i, accuracy[n], 0, 0.0) for i, n in enumerate(names)]
        self._by_name = {m.name: m for m in self.models}

    def model(self, name: str) -> ModelVariant:
        return self._by_name[name]


@dataclass
class _Pending:
    app: str
    variant: str
    top1: int
    latency_ms: float
    slo_met: bool
    cost_usd: float
    done_s: float


def served_apps(cfg, settings: ServingConfig, catalog) -> list[App]:
    """The config's apps (ImageNet variants from the catalog that meet the floor and that a
    runtime can load) when `serve_config_apps`, then the serving section's own apps."""
    apps = []
    if settings.serve_config_apps:
        for a in cfg.apps:
            names = [m.name for m in catalog.models if m.name in VARIANTS and m.top1_accuracy >= a.min_accuracy]
            if names:
                apps.append(App(a.name, a.slo_ms, a.min_accuracy, tuple(names)))
    for a in settings.apps:
        for v in a.variants:
            spec_of(v)  # raises UnknownVariant naming the known ones
        apps.append(App(a.name, a.slo_ms, a.min_accuracy, tuple(a.variants)))
    return apps


def variant_accuracy(variants, catalog) -> dict[str, float]:
    """Prior accuracy per variant: measured for digits (trains on first use), else the catalog's."""
    from serving import digits

    out = {}
    for v in variants:
        if v.startswith("digits-"):
            out[v] = digits.measured_accuracy(v)
        else:
            out[v] = catalog.model(v).top1_accuracy
    return out


class RouterCore:
    """Per-request decisions of the router (one instance per router replica)."""

    def __init__(self, apps: list[App], accuracy: dict[str, float], settings: ServingConfig):
        from selector import make_selector

        self.settings = settings
        self.apps = {a.name: a for a in apps}
        self.accuracy = dict(accuracy)
        self.variants = sorted({v for a in apps for v in a.variants})
        self.rng = np.random.default_rng(settings.seed)
        self.selectors, self._lists = {}, {}
        for a in apps:
            lst = _ModelList(list(a.variants), accuracy)
            cls = QueryClass(a.name, a.slo_ms, a.min_accuracy, 1.0)
            self.selectors[a.name] = make_selector(settings.selector, [cls], lst, settings.selector_params)
            self._lists[a.name] = lst
        self.inflight_vm = {v: 0 for v in self.variants}
        self.batch_ms = {v: None for v in self.variants}  # EWMA of the VM batch compute time
        # From the control loop's Plan: the VM wait budget per variant (Route.max_vm_wait_ms) and
        # the replicas running on procured VMs beside the head's own.
        self.route_budget_ms: dict[str, float | None] = {}
        self.vm_replicas = {v: 0 for v in self.variants}
        self._pending: OrderedDict[str, _Pending] = OrderedDict()

    # --- names -------------------------------------------------------------------------------
    def resolve(self, name: str) -> tuple[App | None, str | None]:
        if name in self.apps:
            return self.apps[name], None
        if name in self.variants:
            return None, name
        raise UnknownName(f"unknown model {name!r}; apps: {', '.join(sorted(self.apps))}; "
                          f"variants: {', '.join(self.variants)}")

    # --- selection ---------------------------------------------------------------------------
    def choose(self, app: App, min_accuracy: float | None) -> str:
        from selector import NoFeasibleModel

        sel, lst = self.selectors[app.name], self._lists[app.name]
        try:
            idx = int(sel.select(0, 1, self.rng)[0])
        except NoFeasibleModel as e:
            raise NoModel("min_accuracy", str(e)) from None
        variant = lst.models[idx].name
        if min_accuracy is None or min_accuracy <= app.min_accuracy:
            return variant
        # A stricter floor than the app's: keep the pick if it is estimated to meet it, else the
        # least accurate arm that does (accuracy is the proxy for cost among the app's arms).
        est = dict(zip(sel.arms(0), sel.estimated_accuracy(0)))
        if est.get(variant, 0.0) >= min_accuracy:
            return variant
        ok = sorted((acc, name) for name, acc in est.items() if acc >= min_accuracy)
        if not ok:
            best = max(est.items(), key=lambda kv: kv[1])
            raise NoModel("parameters.min_accuracy", f"no variant of {app.name!r} reaches {min_accuracy:g} "
                                                      f"(best: {best[0]} at {best[1]:.3f})")
        return ok[0][1]

    # --- VM or function ----------------------------------------------------------------------
    def expected_vm_ms(self, variant: str) -> float:
        """Queue wait plus service at the VM deployment: batches ahead of this request times the
        recent batch time. E.g. 20 in flight, batch 8, 12 ms a batch: (20 // 8 + 1) * 12 = 36 ms."""
        batch_ms = self.batch_ms.get(variant)
        if batch_ms is None:
            return 0.0  # nothing measured yet: the VM path is the default
        opts = self.settings.options_for(variant)
        replicas = max(1, opts.min_replicas or 1) + self.vm_replicas.get(variant, 0)
        per_round = opts.max_batch_size * replicas
        return (self.inflight_vm.get(variant, 0) // per_round + 1) * batch_ms

    def should_spill(self, variant: str, slo_ms: float) -> bool:
        """Over `spill_fraction` of the SLO expected at the VMs, or (when the control loop has
        planned a route) a queue wait beyond the route's budget."""
        if not self.settings.functions.enabled:
            return False
        expected = self.expected_vm_ms(variant)
        if expected > self.settings.spill_fraction * slo_ms:
            return True
        budget = self.route_budget_ms.get(variant)
        return budget is not None and expected - (self.batch_ms.get(variant) or 0.0) > budget

    def vm_started(self, variant: str) -> None:
        self.inflight_vm[variant] = self.inflight_vm.get(variant, 0) + 1

    def vm_finished(self, variant: str, batch_ms: float | None) -> None:
        self.inflight_vm[variant] = max(0, self.inflight_vm.get(variant, 0) - 1)
        if batch_ms is not None and math.isfinite(batch_ms):
            old = self.batch_ms.get(variant)
            self.batch_ms[variant] = batch_ms if old is None else 0.8 * old + 0.2 * batch_ms

    # --- learning ----------------------------------------------------------------------------
    def finish(self, request_id: str, app: App | None, variant: str, top1: int, latency_ms: float,
               slo_ms: float, now_s: float, cost_usd: float = 0.0) -> bool:
        """Record a served request; returns whether it met its SLO. Apps' requests wait for a label."""
        met = latency_ms <= slo_ms
        if app is not None:
            self._pending[request_id] = _Pending(app.name, variant, int(top1), latency_ms, met, cost_usd, now_s)
            while len(self._pending) > _MAX_PENDING:
                self._observe(self._pending.popitem(last=False)[1], math.nan)
        self.flush(now_s)
        return met

    def feedback(self, request_id: str, label: int) -> bool:
        """The true class of a served request; returns whether the prediction was right."""
        p = self._pending.pop(request_id, None)
        if p is None:
            raise KeyError(request_id)
        correct = float(p.top1 == int(label))
        self._observe(p, correct)
        return bool(correct)

    def flush(self, now_s: float) -> int:
        """Let the selector learn from requests whose feedback window has passed, without a label."""
        n = 0
        while self._pending:
            rid, p = next(iter(self._pending.items()))
            if now_s - p.done_s < self.settings.feedback_window_s:
                break
            self._pending.popitem(last=False)
            self._observe(p, math.nan)
            n += 1
        return n

    def _observe(self, p: _Pending, correct: float) -> None:
        lst = self._lists[p.app]
        self.selectors[p.app].observe(0, np.array([lst.model(p.variant).index]), np.array([p.latency_ms]),
                                      np.array([float(p.slo_met)]), np.array([correct]), np.array([p.cost_usd]))

    def summary(self) -> dict:
        return {"apps": {name: {"slo_ms": a.slo_ms, "min_accuracy": a.min_accuracy, "variants": list(a.variants),
                                "selector": _plain(self.selectors[name].summary().get(name, {}))}
                         for name, a in self.apps.items()},
                "vm": {v: {"inflight": self.inflight_vm[v], "batch_ms": self.batch_ms[v],
                           "vm_replicas": self.vm_replicas.get(v, 0), "route_budget_ms": self.route_budget_ms.get(v)}
                       for v in self.variants},
                "pending_feedback": len(self._pending)}


def _plain(x):
    """numpy values -> JSON-able Python."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
