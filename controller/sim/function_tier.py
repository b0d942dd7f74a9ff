"""One model's function tier: one configuration, or INFless's non-uniform set of them.

With several configurations, each takes a band of the spill rate, filled from the bottom
(band [lo, hi) takes clip(rate - lo, 0, hi - lo) of the second's rate): e.g. a large-batch
configuration for the steady part and a small one for the tail. Requests are split among bands
at random in those proportions (a random split of a Poisson stream stays Poisson per band),
each band running its own instances (`FunctionPool`).
"""
from __future__ import annotations

import math

import numpy as np

from controller.sim.function_pool import FunctionPool


class FunctionTier:
    def __init__(self, model: str, catalog, fp, rng: np.random.Generator):
        self.model = model
        self._catalog, self._fp, self._rng = catalog, fp, rng
        self.pools: list[FunctionPool] = [FunctionPool(model, catalog, fp)]
        self.bands: list[tuple[float, float]] = [(0.0, math.inf)]

    # The single-configuration view the engine and observations use.
    @property
    def deployed(self) -> bool:
        return any(p.deployed for p in self.pools)

    @property
    def alive(self) -> int:
        pools = self.pools
        return pools[0].alive if len(pools) == 1 else sum(p.alive for p in pools)

    @property
    def warm_pool(self) -> int:
        return sum(p.warm_pool for p in self.pools)

    @property
    def memory_mb(self) -> int:
        return self.pools[0].memory_mb

    def prewarm_cost_per_s(self) -> float:
        return sum(p.prewarm_cost_per_s() for p in self.pools)

    def configure(self, configs) -> float:
        """`configs`: SetFunctionConfig records for this model, bottom band first. Returns the
        $ of initialising new warm instances. Pools are kept by position, so re-sending the
        same set keeps their instances."""
        configs = sorted(configs, key=lambda c: c.rate_lo_per_s)
        while len(self.pools) < len(configs):
            self.pools.append(FunctionPool(self.model, self._catalog, self._fp))
        del self.pools[len(configs):]
        self.bands = [(c.rate_lo_per_s, c.rate_hi_per_s) for c in configs]
        return sum(p.configure(c.memory_mb, c.warm_pool, c.batch_size, c.wait_ms, c.partition_plan)
                   for p, c in zip(self.pools, configs))

    def idle(self, second: int) -> None:
        """A second without requests for this model: `serve` of none (no draw is made then)."""
        for p in self.pools:
            p.idle(second)

    def serve(self, second: int, offsets_s: np.ndarray, limit: int, slo_ms=None):
        if len(self.pools) == 1:
            return self.pools[0].serve(second, offsets_s, limit, slo_ms)
        n = len(offsets_s)
        share = np.array([max(0.0, min(n, hi) - lo) for lo, hi in self.bands])
        band = (self._rng.choice(len(self.pools), size=n, p=share / share.sum()) if n and share.sum() > 0
                else np.zeros(n, dtype=np.int64))
        ok = np.zeros(n, dtype=bool)
        lat, cold, cost = np.empty(n), np.zeros(n, dtype=bool), np.empty(n)
        for b, pool in enumerate(self.pools):
            idx = np.flatnonzero(band == b)
            slo_b = slo_ms[idx] if isinstance(slo_ms, np.ndarray) else slo_ms
            o, l, c, u = pool.serve(second, offsets_s[idx], limit, slo_b)
            sel = idx[o]
            ok[sel], lat[sel], cold[sel], cost[sel] = True, l, c, u
        return ok, lat[ok], cold[ok], cost[ok]

    def take_interval_stats(self):
        stats = [p.take_interval_stats() for p in self.pools]
        inv = sum(s[1] for s in stats)
        mean = sum(s[1] * s[3] for s in stats) / inv if inv else 0.0
        return sum(s[0] for s in stats), inv, sum(s[2] for s in stats), mean
