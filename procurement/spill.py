"""Spill budget: how long a request may queue for a VM replica and still meet its SLO; a
request expecting a longer wait goes to a function instead.

The budget for waiting is what the SLO leaves after the VM's service time (the batch's
execution latency) and fixed overheads: resnet50 at SLO 300 ms on c5.xlarge with batch 256
(95.2 ms) and 10 ms of network leaves 300 - 95.2 - 10 = 194.8 ms of queueing.
`Route.max_vm_wait_ms` in a Plan carries the budget to the router, which applies it on its hot
path (serving/routing.py), as the simulator's VM pool does (controller/sim/vm_pool.py).
"""
from __future__ import annotations

import numpy as np


def vm_wait_budget_ms(slo_ms, vm_service_ms, *, network_ms: float = 0.0, safety_ms: float = 0.0,
                      safety_frac: float = 0.0):
    """Longest expected VM queueing a request can take and still meet `slo_ms`.

    `safety_frac` keeps a share of the SLO in reserve (service-time noise). Scalars or arrays
    (per-request SLOs); the result may be negative: then no wait, not even zero, fits."""
    slo = np.asarray(slo_ms, dtype=float)
    budget = slo * (1.0 - safety_frac) - np.asarray(vm_service_ms, dtype=float) - network_ms - safety_ms
    return float(budget) if budget.ndim == 0 else budget
