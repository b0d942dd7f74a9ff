"""One model's VM pool in the simulator: a fluid FIFO queue in front of the ready VMs.

Service model (dynamic batching, as Ray Serve's @serve.batch and Triton do: a free slot takes
up to `batch_size` waiting requests). A VM of type T runs `c_T` batches at once; a full batch
of b takes L_T(b) ms, so the pool drains at mu = sum_T n_T * c_T * b / L_T(b) requests/s when
saturated. Under lighter load batches are only as large as what arrives during one batch
period per slot, b_eff = clip(lambda_T * L_T(1) / c_T, 1, b), so latency is L_T(b_eff).

Queueing: the backlog is a fluid that grows by one per admitted arrival and drains at mu; the
wait of a request is the backlog it finds divided by mu, plus on average half a slot period
(rho * L / 2C) before its batch starts. A request is admitted only if that wait is within the
route's budget; the others spill to the function tier (or are dropped when the route does not
spill). Within a second, arrival offsets are exact, so bursts inside the second queue.
"""
from __future__ import annotations

import bisect
import math

import numpy as np


def _interp(x: float, xs: list, ys: list) -> float:
    """np.interp for one point on a short list, without numpy's per-call overhead."""
    i = bisect.bisect_left(xs, x)
    if i <= 0:
        return ys[0]
    if i >= len(xs):
        return ys[-1]
    x0, x1 = xs[i - 1], xs[i]
    return ys[i - 1] + (ys[i] - ys[i - 1]) * (x - x0) / (x1 - x0)


class VmPool:
    def __init__(self, model: str, catalog):
        self.model = model
        self._catalog = catalog
        self.backlog = 0.0
        self.mu_per_s = 0.0
        self.slots = 0.0
        self.batch_size = 1
        self._types: list[tuple[int, object]] = []  # (count, VmProfile)
        self._service_l1_ms = 0.0

    def set_fleet(self, ready_by_type: dict[str, int], batch_size: int) -> None:
        self.batch_size = max(1, int(batch_size))
        self._types, self.mu_per_s, self.slots = [], 0.0, 0.0
        for t, n in ready_by_type.items():
            prof = self._catalog.vm_profile(self.model, t)
            if n <= 0 or prof is None:
                continue
            b = min(self.batch_size, int(prof.batch[-1]))
            cap = n * prof.capacity_per_s(b)
            # What service_ms needs per type, precomputed: it runs every simulated second.
            per_req_s = prof.latency_at(1) / 1000.0 / (n * prof.concurrency_at(1))
            self._types.append((cap, per_req_s, b, prof.batch.tolist(), prof.latency_ms.tolist()))
            self.mu_per_s += cap
            self.slots += n * prof.concurrency_at(b)

    def service_ms(self, rate_per_s: float) -> float:
        """Capacity-weighted batch latency at this arrival rate."""
        if self.mu_per_s <= 0:
            return math.inf
        total = 0.0
        for cap, per_req_s, b, batches, lats in self._types:
            share = cap / self.mu_per_s
            b_eff = min(b, max(1.0, rate_per_s * share * per_req_s))
            total += share * _interp(b_eff, batches, lats)
        return total

    def serve(self, offsets_s: np.ndarray, max_wait_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Admit arrivals (sorted offsets within this second) whose wait fits `max_wait_s`.

        Returns (admitted mask, latency_ms of the admitted) and advances the backlog by 1 s.
        """
        n = len(offsets_s)
        mu = self.mu_per_s
        if mu <= 0:
            return np.zeros(n, dtype=bool), np.empty(0)
        b0 = self.backlog
        if n == 0:
            self.backlog = max(0.0, b0 - mu)
            return np.zeros(0, dtype=bool), np.empty(0)
        # Fluid backlog found by arrival i if all are admitted (Lindley in closed form):
        # Y_i = b0 + i - mu*u_i; backlog_i = Y_i - min(0, min_{k<=i} Y_k).
        y = b0 + np.arange(n) - mu * offsets_s
        backlog = y - np.minimum(0.0, np.minimum.accumulate(y))
        cap = max_wait_s * mu
        if backlog[-1] <= cap and backlog.max() <= cap:
            admitted = np.ones(n, dtype=bool)
            end_y = b0 + n - mu
            self.backlog = max(0.0, end_y - min(0.0, min(float(np.min(y)), end_y)))
        else:
            admitted, backlog = self._serve_capped(offsets_s, b0, mu, cap)
        waits_s = backlog[admitted] / mu
        k = int(admitted.sum())
        svc_ms = self.service_ms(float(k))
        rho = min(1.0, k / mu)
        slot_wait_ms = rho * svc_ms / (2.0 * max(self.slots, 1.0))
        return admitted, waits_s * 1000.0 + svc_ms + slot_wait_ms

    def _serve_capped(self, offsets_s, b0, mu, cap):
        """The same fluid queue, admitting one arrival at a time while the backlog fits."""
        n = len(offsets_s)
        admitted = np.zeros(n, dtype=bool)
        found = np.zeros(n)
        b, last = b0, 0.0
        for i, u in enumerate(offsets_s.tolist()):
            b = b - mu * (u - last)
            if b < 0.0:
                b = 0.0
            last = u
            if b <= cap:
                admitted[i] = True
                found[i] = b
                b += 1.0
        self.backlog = max(0.0, b - mu * (1.0 - last))
        return admitted, found
