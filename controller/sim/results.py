"""What one simulated run measured: counts, costs, a latency histogram and time series."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Latency histogram: log-spaced bins from 0.1 ms to 10^6 ms, 1,000 per decade (0.23% wide).
HIST_LO, HIST_DECADES, HIST_PER_DECADE = -1.0, 7, 1000
HIST_BINS = HIST_DECADES * HIST_PER_DECADE


def hist_index(latency_ms: np.ndarray) -> np.ndarray:
    x = (np.log10(np.maximum(latency_ms, 1e-3)) - HIST_LO) * HIST_PER_DECADE
    return np.clip(x.astype(np.int64), 0, HIST_BINS - 1)


def hist_upper_edge_ms(i: np.ndarray | int) -> np.ndarray:
    return 10 ** (HIST_LO + (np.asarray(i) + 1) / HIST_PER_DECADE)


@dataclass
class RunResult:
    policy: str
    requests: int = 0
    served_vm: int = 0
    served_function: int = 0
    dropped: int = 0
    slo_violations: int = 0  # served late or dropped
    meets_both: int = 0  # served within the SLO by a model meeting the accuracy floor
    cold_starts: int = 0
    vm_usd: float = 0.0
    function_usd: float = 0.0
    accuracy_sum: float = 0.0  # sum over served requests of the serving model's top-1 accuracy
    latency_hist: np.ndarray = field(default_factory=lambda: np.zeros(HIST_BINS, np.int64))
    function_latency_hist: np.ndarray = field(default_factory=lambda: np.zeros(HIST_BINS, np.int64))  # its part
    bucket_s: int = 60
    series: dict = field(default_factory=dict)  # name -> np.ndarray per bucket
    wall_s: float = 0.0
    simulated_s: int = 0
    tick_ms: list = field(default_factory=list)
    class_requests: list = field(default_factory=list)
    model_requests: list = field(default_factory=list)  # per catalog model: requests the selector sent it
    models: tuple = ()  # catalog model names, for `variants`
    reference: dict = field(default_factory=dict)  # the offline optimum's solve (objective, gap, ...)
    faults: dict = field(default_factory=lambda: dict.fromkeys(
        ("tick_errors", "provider_errors", "guard_refusals", "boot_failures", "vm_deaths",
         "function_errors", "function_retries"), 0))
    last_tick_error: str = ""

    @property
    def total_usd(self) -> float:
        return self.vm_usd + self.function_usd

    @property
    def served(self) -> int:
        return self.served_vm + self.served_function

    def percentile_ms(self, q: float, backend: str | None = None) -> float:
        """The q-th latency percentile of served requests: all, or those one backend ("vm" or
        "function") served."""
        hist = {None: self.latency_hist, "function": self.function_latency_hist,
                "vm": self.latency_hist - self.function_latency_hist}[backend]
        total = int(hist.sum())
        if total == 0:
            return float("nan")
        rank = np.searchsorted(np.cumsum(hist), q / 100.0 * total, side="left")
        return float(hist_upper_edge_ms(min(rank, HIST_BINS - 1)))

    def variants(self) -> str:
        """The variants the run served, with their share of requests ("resnet18 100%")."""
        total = sum(self.model_requests)
        if not total:
            return ""
        parts = sorted(((n, m) for m, n in zip(self.models, self.model_requests) if n), reverse=True)
        return ", ".join(f"{m} {100.0 * n / total:.3g}%" for n, m in parts)

    def summary(self) -> dict:
        n = max(self.requests, 1)
        return {
            "policy": self.policy,
            "total_cost_usd": round(self.total_usd, 4),
            "vm_cost_usd": round(self.vm_usd, 4),
            "function_cost_usd": round(self.function_usd, 4),
            "slo_violation_pct": round(100.0 * self.slo_violations / n, 3),
            "p50_ms": round(self.percentile_ms(50), 1),
            "p95_ms": round(self.percentile_ms(95), 1),
            "p99_ms": round(self.percentile_ms(99), 1),
            "mean_accuracy_pct": round(100.0 * self.accuracy_sum / max(self.served, 1), 2),
            "meets_floor_and_slo_pct": round(100.0 * self.meets_both / n, 3),
            "vm_share_pct": round(100.0 * self.served_vm / n, 2),
            "function_share_pct": round(100.0 * self.served_function / n, 2),
            "cold_starts": self.cold_starts,
            "dropped": self.dropped,
            "requests": self.requests,
            "cost_per_million_usd": round(1e6 * self.total_usd / n, 4),
            "variants": self.variants(),
            "sim_requests_per_s": round(self.requests / self.wall_s) if self.wall_s > 0 else 0,
        }
