"""Cost arithmetic, the same for the simulator, the live daemon and the lower bound.

VMs: per-second billing with a minimum (EC2 Linux: 60 s). A VM that lived 42.3 s costs
60 s; one that lived 61.2 s costs 62 s (seconds round up).
Functions: GB-seconds billed in `billing_granularity_ms` steps (Lambda: 1 ms) plus a price per
request. 128 MB for 100.2 ms = 0.125 GB x 0.101 s x $0.0000166667 + $0.0000002.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from controller.config import FunctionPlatformConfig


def vm_charge_usd(price_usd_per_h: float, lifetime_s: float, minimum_s: float = 60.0) -> float:
    """What one VM costs for `lifetime_s` seconds from launch to termination."""
    billed_s = max(minimum_s, math.ceil(max(0.0, lifetime_s) - 1e-9))
    return price_usd_per_h / 3600.0 * billed_s


def function_charge_usd(duration_ms, memory_mb: float, fp: FunctionPlatformConfig, requests=1):
    """Cost of invocations lasting `duration_ms` (scalar or array) at `memory_mb`."""
    g = fp.billing_granularity_ms
    billed_ms = np.ceil(np.asarray(duration_ms, dtype=float) / g - 1e-9) * g
    gb_s = billed_ms / 1000.0 * (memory_mb / 1024.0)
    cost = gb_s * fp.price_usd_per_gb_s + fp.price_usd_per_request * np.asarray(requests)
    return float(cost) if np.ndim(cost) == 0 else cost


@dataclass
class Ledger:
    """Running totals by backend and model; both shells feed it the same events."""

    vm_usd: float = 0.0
    function_usd: float = 0.0
    by_model_usd: dict = field(default_factory=dict)

    def add_vm(self, model: str, usd: float) -> None:
        self.vm_usd += usd
        self.by_model_usd[model] = self.by_model_usd.get(model, 0.0) + usd

    def add_function(self, model: str, usd: float) -> None:
        self.function_usd += usd
        self.by_model_usd[model] = self.by_model_usd.get(model, 0.0) + usd

    @property
    def total_usd(self) -> float:
        return self.vm_usd + self.function_usd
