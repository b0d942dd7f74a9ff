"""Prometheus metrics of the live router, served at GET /metrics by the router deployment.

One private registry per router process (so importing this twice in tests cannot clash with
the default registry). Labels: app ("" for a request naming a variant), model variant,
backend ("vm" | "function"), status ("ok" | "client_error" | "server_error").
"""
from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 1000, 2000, 5000, 10000, 30000)


class Served(NamedTuple):
    """The labelled series one served request of (app, model, backend) updates."""

    requests_ok: Counter
    latency_ms: Histogram
    slo_violations: Counter


class RouterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("hybridserve_requests", "Inference requests",
                                ["app", "model", "backend", "status"], registry=r)
        self.latency_ms = Histogram("hybridserve_latency_ms", "End-to-end router latency (ms)",
                                    ["app", "model", "backend"], buckets=_LATENCY_BUCKETS_MS, registry=r)
        self.slo_violations = Counter("hybridserve_slo_violations", "Requests slower than their SLO",
                                      ["app", "model", "backend"], registry=r)
        self.cold_starts = Counter("hybridserve_cold_starts", "Function invocations that started an instance",
                                   ["model"], registry=r)
        self.feedback = Counter("hybridserve_feedback", "Accuracy labels received", ["app", "model", "correct"],
                                registry=r)
        self.vm_inflight = Gauge("hybridserve_vm_inflight", "Requests in flight at a VM deployment", ["model"],
                                 registry=r)
        self.function_instances = Gauge("hybridserve_function_instances", "Local function instances", ["model"],
                                        registry=r)
        self.function_memory_mb = Gauge("hybridserve_function_memory_mb", "Configured function memory",
                                        ["model"], registry=r)

        # Pushed by the daemon's control loop every tick (serving.control_loop).
        self.cost_usd = Gauge("hybridserve_cost_usd", "Cost so far by backend (ledger)", ["backend"], registry=r)
        self.fleet = Gauge("hybridserve_fleet_vms", "Local VMs by instance type, model and state",
                           ["instance_type", "model", "state"], registry=r)
        self.forecast_per_s = Gauge("hybridserve_forecast_per_s", "Forecast arrival rate per query class (mean)",
                                    ["app"], registry=r)
        self.forecast_upper_per_s = Gauge("hybridserve_forecast_upper_per_s", "Forecast upper quantile per class",
                                          ["app"], registry=r)
        self.arrivals_per_s = Gauge("hybridserve_arrivals_per_s", "Measured arrival rate per class, last tick",
                                    ["app"], registry=r)
        self.route_budget_ms = Gauge("hybridserve_route_vm_wait_budget_ms", "Planned VM wait budget before spill",
                                     ["model"], registry=r)
        self.vm_cost_per_request_usd = Gauge("hybridserve_vm_cost_per_request_usd",
                                             "VM cost per request fed to the selector", ["model"], registry=r)
        self.function_warm_pool = Gauge("hybridserve_function_warm_pool", "Planned warm function instances",
                                        ["model"], registry=r)
        self.control_ticks = Gauge("hybridserve_control_ticks", "Control ticks run", registry=r)
        self.control_errors = Gauge("hybridserve_control_errors", "Control ticks that failed, and provider errors",
                                    ["kind"], registry=r)
        self.control_tick_s = Gauge("hybridserve_control_tick_seconds", "Duration of the last control tick",
                                    registry=r)
        self.control_last_tick = Gauge("hybridserve_control_last_good_tick_timestamp_seconds",
                                       "Wall time of the last good control tick", registry=r)

        # Labelled children of the per-request series, cached: `labels()` hashes and validates
        # the label values on every call (~4 us each, several per request on the hot path).
        self._served: dict[tuple[str, str, str], Served] = {}
        self._inflight: dict[str, Gauge] = {}

    def served(self, app: str, model: str, backend: str) -> Served:
        key = (app, model, backend)
        out = self._served.get(key)
        if out is None:
            out = self._served[key] = Served(self.requests.labels(app, model, backend, "ok"),
                                             self.latency_ms.labels(app, model, backend),
                                             self.slo_violations.labels(app, model, backend))
        return out

    def inflight(self, model: str) -> Gauge:
        """The `hybridserve_vm_inflight` gauge of one model."""
        g = self._inflight.get(model)
        if g is None:
            g = self._inflight[model] = self.vm_inflight.labels(model)
        return g

    def set_control(self, status: dict) -> None:
        """Mirror the daemon's pushed control status into the gauges."""
        for backend, usd in status.get("cost_usd", {}).items():
            self.cost_usd.labels(backend).set(usd)
        self.fleet.clear()
        for vm in status.get("fleet", []):
            self.fleet.labels(vm["instance_type"], vm["model"], vm["state"]).inc()
        for app, f in status.get("forecast", {}).items():
            self.forecast_per_s.labels(app).set(f["mean_per_s"])
            self.forecast_upper_per_s.labels(app).set(f["upper_per_s"])
        for app, rate in status.get("arrivals_per_s", {}).items():
            self.arrivals_per_s.labels(app).set(rate)
        tick = status.get("tick", {})
        self.control_ticks.set(tick.get("ticks", 0))
        for kind, n in tick.get("errors", {}).items():
            self.control_errors.labels(kind).set(n)
        if tick.get("last_duration_s") is not None:
            self.control_tick_s.set(tick["last_duration_s"])
        if tick.get("last_good_s") is not None:
            self.control_last_tick.set(tick["last_good_s"])

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
