"""Prometheus metrics of the live router, served at GET /metrics by the router deployment.

One private registry per router process (so importing this twice in tests cannot clash with
the default registry). Labels: app ("" for a request naming a variant), model variant,
backend ("vm" | "function"), status ("ok" | "client_error" | "server_error").
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 1000, 2000, 5000, 10000, 30000)


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

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
