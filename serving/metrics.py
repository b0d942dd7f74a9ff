"""Prometheus metrics of the live router, served at GET /metrics by the router deployment.

One private registry per router process (so importing this twice in tests cannot clash with
the default registry). Labels: app ("" for a request naming a variant), model variant,
backend ("vm" | "function"), status ("ok" | "client_error" | "server_error").
Names in Prometheus base units (`_seconds`, `_bytes`; counters get `_total` from the
client library), as `promtool check metrics` expects.
"""
from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Prometheus base units: seconds (1 ms .. 30 s).
_LATENCY_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class Served(NamedTuple):
    """The labelled series one served request of (app, model, backend) updates."""

    requests_ok: Counter
    latency_s: Histogram
    slo_violations: Counter


class RouterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("hybridserve_requests", "Inference requests",
                                ["app", "model", "backend", "status"], registry=r)
        self.latency_s = Histogram("hybridserve_latency_seconds", "End-to-end router latency",
                                   ["app", "model", "backend"], buckets=_LATENCY_BUCKETS_S, registry=r)
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
        self._function_memory_bytes = Gauge("hybridserve_function_memory_bytes", "Configured function memory",
                                            ["model"], registry=r)

        # Pushed by the daemon's control loop every tick (controller.live.control_loop).
        self.cost_usd = Gauge("hybridserve_cost_usd", "Cost so far by backend (ledger)", ["backend"], registry=r)
        self.fleet = Gauge("hybridserve_fleet_vms", "Local VMs by instance type, model and state",
                           ["instance_type", "model", "state"], registry=r)
        # Rates are plain gauges in requests per second (no unit suffix: Prometheus has no base
        # unit for a rate; a counter's rate() is how it prefers them, these are forecasts).
        self.forecast_per_s = Gauge("hybridserve_forecast_requests_per_second",
                                    "Forecast arrival rate per query class (mean), requests per second",
                                    ["app"], registry=r)
        self.forecast_upper_per_s = Gauge("hybridserve_forecast_upper_requests_per_second",
                                          "Forecast upper quantile per class, requests per second", ["app"], registry=r)
        self.arrivals_per_s = Gauge("hybridserve_arrivals_requests_per_second",
                                    "Measured arrival rate per class over the last tick, requests per second",
                                    ["app"], registry=r)
        self._route_budget_s = Gauge("hybridserve_route_vm_wait_budget_seconds", "Planned VM wait budget before spill",
                                     ["model"], registry=r)
        self.route_share = Gauge("hybridserve_route_target_share_ratio",
                                 "Planned share of a variant's VM requests per target (head or VM app)",
                                 ["model", "target"], registry=r)
        self.routed = Counter("hybridserve_routed_requests", "Requests sent to each VM target",
                              ["model", "target"], registry=r)
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
                                             self.latency_s.labels(app, model, backend),
                                             self.slo_violations.labels(app, model, backend))
        return out

    def set_function_memory_mb(self, model: str, memory_mb: float) -> None:
        self._function_memory_bytes.labels(model).set(float(memory_mb) * 1024 * 1024)

    def set_route_budget_ms(self, model: str, budget_ms: float) -> None:
        self._route_budget_s.labels(model).set(float(budget_ms) / 1000.0)

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
