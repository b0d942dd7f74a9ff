"""Spill rule: a request goes to a VM replica when its expected wait there plus the service
time fits its SLO budget; otherwise it goes to a function.

The budget for waiting is what the SLO leaves after the VM's service time (the batch's
execution latency) and fixed overheads: resnet50 at SLO 300 ms on c5.xlarge with batch 256
(95.2 ms) and 10 ms of network leaves 300 - 95.2 - 10 = 194.8 ms of queueing. The router
evaluates the rule per request on its hot path, so `route_to_vm` is vectorised over requests.
`Route.max_vm_wait_ms` in a Plan carries the budget to the router.
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


def expected_vm_wait_ms(queue_position, batch_size: int, batch_latency_ms: float, num_slots: int,
                        *, busy: bool = True):
    """Expected wait of requests at 0-based FIFO `queue_position`s of one model's VM pool.

    `num_slots` batches of up to `batch_size` run at once (VMs x concurrent batches per VM);
    position k joins round k // (batch_size x num_slots), so it waits that many full batch
    executions, plus, when the slots are busy, the mean residual of the running batch (half
    of one). Example: position 600, batch 64, 5 slots -> round 1 -> 0.5 x 51 + 1 x 51 ms."""
    pos = np.asarray(queue_position, dtype=float)
    per_round = max(1, int(batch_size)) * max(1, int(num_slots))
    rounds = np.floor(pos / per_round)
    return (0.5 * batch_latency_ms if busy else 0.0) + rounds * batch_latency_ms


def route_to_vm(expected_wait_ms: np.ndarray, budget_ms) -> np.ndarray:
    """True where a request should go to a VM replica (expected wait within its budget),
    False where it should spill to a function. `budget_ms`: scalar or per-request array."""
    wait = np.asarray(expected_wait_ms, dtype=float)
    return wait <= np.asarray(budget_ms, dtype=float)
