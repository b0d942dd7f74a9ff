"""The router's decisions, without Ray or HTTP: which name is what, which variant serves a query,
VM or function, and what the selector learns from each outcome.

`serving.deployments.Router` (the Ray Serve ingress) owns one `RouterCore` and calls it per
request; this file holds the logic so it can be read (and tested) apart from the transport.

- `resolve(name)`: an app (query class with SLO and accuracy floor) or a model variant.
- `choose(app, slo_ms, min_accuracy)`: the policy's selector (`install_selector`: the control
  loop hands over `policy.selector()`, the object the simulator selects with, one class per
  app) picks a variant; a request floor above the app's own filters the arms by their current
  accuracy estimate. There is no other selector: before one is installed (or with the control
  loop off) an app is served by its first variant.
- `decide_backend(variant, slo_ms)`: with a planned route (serving.routing, the Plan's
  routing table) the simulator's rule: VM while the expected wait at the variant's VM
  targets fits the route's budget, else the function (spill on) or a drop (spill off); without
  one, or once an operator has set `spill_fraction` (POST /admin/config: `spill_pinned`, the
  operator's setting wins over the plan, as pinned function memory does), the expected VM
  latency against `spill_fraction` of the SLO.
- `pick_target(variant)`: the VM target by the plan's capacity weights.
- `finish(...)` / `feedback(...)` / `flush(now_s)`: each served request waits up to
  `feedback_window_s` for its true label, then the selector observes it once (with the label
  or without), as the simulator's selector observes each outcome.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

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
        self.settings = settings
        self.apps = {a.name: a for a in apps}
        self.accuracy = dict(accuracy)
        self.variants = sorted({v for a in apps for v in a.variants})
        self.rng = np.random.default_rng(settings.seed)
        # The policy's selector (install_selector); app -> its class index there; catalog names.
        self.selector = None
        self._class_of: dict[str, int] = {}
        self._model_names: list[str] = []
        self._model_index: dict[str, int] = {}
        # The plan's routing table (serving.routing.VariantRoute per variant; empty before a plan).
        self.routes: dict = {}
        self.spill_pinned = False  # an operator's spill_fraction (POST /admin/config) overrides the routes' rule
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
    def install_selector(self, selector, class_names, model_names) -> None:
        """Select with `selector` (the policy's: `policy.selector()`), whose class i is the app
        `class_names[i]` and whose model indices are positions in `model_names` (its catalog).
        A copy: the one Ray hands over is deserialized zero-copy, its numpy arrays read-only."""
        import copy

        self.selector = copy.deepcopy(selector)
        self._class_of = {name: i for i, name in enumerate(class_names) if name in self.apps}
        self._model_names = list(model_names)
        self._model_index = {m: i for i, m in enumerate(self._model_names)}

    def selector_state(self):
        """The installed selector's learned state as a dict (None: none, or it has no state)."""
        st = getattr(self.selector, "state", None)
        return st.to_dict() if st is not None and hasattr(st, "to_dict") else None

    def choose(self, app: App, min_accuracy: float | None) -> str:
        from selector import NoFeasibleModel

        ci = self._class_of.get(app.name)
        if ci is None:  # no policy selector (control loop off, or not started yet): no learning
            variant = app.variants[0]
            if min_accuracy is not None and self.accuracy.get(variant, 0.0) < min_accuracy:
                ok = sorted((self.accuracy.get(v, 0.0), v) for v in app.variants
                            if self.accuracy.get(v, 0.0) >= min_accuracy)
                if not ok:
                    raise NoModel("parameters.min_accuracy", f"no variant of {app.name!r} reaches {min_accuracy:g}")
                variant = ok[0][1]
            return variant
        sel = self.selector
        try:
            idx = int(sel.select(ci, 1, self.rng)[0])
        except NoFeasibleModel as e:
            raise NoModel("min_accuracy", str(e)) from None
        variant = self._model_names[idx]
        if min_accuracy is None or min_accuracy <= app.min_accuracy:
            return variant
        # A stricter floor than the app's: keep the pick if it is estimated to meet it, else the
        # least accurate arm that does (accuracy is the proxy for cost among the app's arms).
        if hasattr(sel, "estimated_accuracy"):
            est = dict(zip(sel.arms(ci), sel.estimated_accuracy(ci)))
        else:  # a fixed selector (baselines): the priors
            est = {v: self.accuracy.get(v, 0.0) for v in app.variants}
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
        """Without a planned route: over `spill_fraction` of the SLO expected at the VMs."""
        if not self.settings.functions.enabled:
            return False
        return self.expected_vm_ms(variant) > self.settings.spill_fraction * slo_ms

    def decide_backend(self, variant: str, slo_ms: float, now_s: float) -> str:
        """"vm", "function" or "drop" for a request of `variant` arriving at `now_s` (a monotonic
        clock; see the module docstring): the planned route's rule when there is one, else
        `should_spill`."""
        route = self.routes.get(variant)
        if route is None or self.spill_pinned:
            return "function" if self.should_spill(variant, slo_ms) else "vm"
        if route.admit(now_s, slo_ms):
            return "vm"
        if route.spill and self.settings.functions.enabled:
            return "function"
        return "drop"

    def planned(self, variant: str) -> bool:
        return variant in self.routes

    def pick_target(self, variant: str, exclude: str | None = None) -> str | None:
        """The planned VM target for the next request (None: no plan, or no target left)."""
        route = self.routes.get(variant)
        return None if route is None else route.pick(exclude)

    def apply_routing(self, table: dict) -> None:
        """The control loop's routing table: variant -> VariantRoute.to_dict()."""
        from serving.routing import VariantRoute

        for v, d in table.items():
            if v not in self.inflight_vm:
                continue
            new = VariantRoute.from_dict(d)
            if v in self.routes:
                self.routes[v].update(new)
            else:
                self.routes[v] = new

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
        ci, j = self._class_of.get(p.app), self._model_index.get(p.variant)
        if ci is None or j is None:
            return  # no policy selector: nothing learns
        # What the simulator feeds its selector per request: latency, SLO met, correct (NaN
        # without a label), cost (engine.py: selector.observe per class and second).
        self.selector.observe(ci, np.array([j]), np.array([p.latency_ms]), np.array([float(p.slo_met)]),
                              np.array([correct]), np.array([p.cost_usd]))

    def summary(self) -> dict:
        sel = self.selector.summary() if self.selector is not None and hasattr(self.selector, "summary") else {}
        return {"apps": {name: {"slo_ms": a.slo_ms, "min_accuracy": a.min_accuracy, "variants": list(a.variants),
                                "selector": _plain(sel.get(name, {}) if name in self._class_of else {})}
                         for name, a in self.apps.items()},
                "vm": {v: {"inflight": self.inflight_vm[v], "batch_ms": self.batch_ms[v],
                           "vm_replicas": self.vm_replicas.get(v, 0), "route_budget_ms": self.route_budget_ms.get(v),
                           "route": self.routes[v].to_dict() | {"shares": self.routes[v].shares()}
                           if v in self.routes else None}
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
