"""Function tuner: per model, the memory size (CPU follows) that minimises expected cost per
request while the p95 latency, cold starts included, fits the SLO; learnt online, without a
full sweep. Also sizes the warm pool.

Like AWS Lambda Power Tuning's analyzer (strategies `cost`, `speed`, `balanced` with a
weight), but in the control loop: the analyzer (`recommend`) is kept apart from the measuring,
and `propose` says which memory size is worth measuring next. The search exploits that duration
is roughly convex-decreasing in memory: estimates borrow from measured neighbours
(tuner_estimator), and only sizes that could still beat the current best by more than `tol`,
judged with optimistic (mu - z sd) against pessimistic (mu + z sd) estimates, are measured, until
each of them is known to `resolved_sd_log`. A successive-elimination (confidence bound) search.

Configurations are keyed by (memory_mb, batch_size) so non-uniform, batched configurations
(issue 12) extend the grid, not the design; today the search runs at batch size 1.

State (`TunerState`) is a plain serializable object; the tuner object holds only static data.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
from scipy.stats import poisson

from procurement.tuner_estimator import (ConfigStats, EstimatorSettings, expected_cost_usd,
                                         p_quantile_ms, pooled_noise_sd, posterior_log)

# Lambda accepts any size from 128 to 10,240 MB; these are the sizes worth telling apart
# (1769 MB = one full vCPU).
DEFAULT_MEMORY_GRID_MB = (128, 256, 384, 512, 768, 1024, 1280, 1536, 1769, 2048, 2560, 3008,
                          3584, 4096, 5120, 6144, 7168, 8192, 9216, 10240)


@dataclass(frozen=True)
class TunerSettings:
    strategy: str = "cost"  # "cost" | "speed" | "balanced"
    balanced_weight: float = 0.5  # weight of cost (vs speed) in "balanced"
    quantile: float = 0.95
    z: float = 2.0  # width of the confidence bounds that decide what to measure, in sd
    z_slo: float = 1.0  # a size counts as meeting the SLO when its p95 at mu + z_slo sd does
    tol: float = 0.01  # a size is worth measuring only if it may beat the best by more than this
    resolved_sd_log: float = 0.035  # a size is known once its log-median sd is below this
    boundary_sd_log: float = 0.02  # ... or below this while it is unclear whether it meets the SLO
    estimator: EstimatorSettings = EstimatorSettings()
    memory_grid_mb: tuple[int, ...] = DEFAULT_MEMORY_GRID_MB

    def __post_init__(self):
        if self.strategy not in ("cost", "speed", "balanced"):
            raise ValueError(f"strategy must be cost, speed or balanced, got {self.strategy!r}")
        if not 0 <= self.balanced_weight <= 1:
            raise ValueError(f"balanced_weight must be in [0, 1], got {self.balanced_weight}")


@dataclass
class TunerState:
    """Measurements per model and configuration; JSON-serializable via to_dict/from_dict."""

    stats: dict = field(default_factory=dict)  # model -> {(memory_mb, batch): ConfigStats}
    num_measurements: dict = field(default_factory=dict)  # model -> int

    def to_dict(self) -> dict:
        return {"stats": {m: {f"{mem}x{b}": s.to_list() for (mem, b), s in sorted(d.items())}
                          for m, d in sorted(self.stats.items())},
                "num_measurements": dict(sorted(self.num_measurements.items()))}

    @classmethod
    def from_dict(cls, d: dict) -> "TunerState":
        stats = {}
        for m, per in d["stats"].items():
            stats[m] = {}
            for k, v in per.items():
                mem, b = k.split("x")
                stats[m][(int(mem), int(b))] = ConfigStats(*map(float, v))
        return cls(stats, {m: int(n) for m, n in d["num_measurements"].items()})


@dataclass(frozen=True)
class TuningChoice:
    model: str
    memory_mb: int
    expected_cost_usd: float  # per request
    p95_ms: float  # at the settings' quantile, cold starts included
    slo_feasible: bool
    converged: bool  # no other size is worth measuring
    num_measurements: int


class FunctionTuner:
    """Static context (catalog priors, platform prices) for tuning; state is passed in."""

    def __init__(self, catalog, fp, settings: TunerSettings | None = None):
        self.catalog = catalog
        self.fp = fp
        self.settings = settings or TunerSettings()
        self._grid: dict[str, np.ndarray] = {}
        self._prior: dict[tuple[str, int], np.ndarray] = {}

    # --- static per model ----------------------------------------------------------------------
    def memory_grid(self, model: str) -> np.ndarray:
        """Grid sizes within the platform limits where the model fits (the catalog profile
        starts at the smallest size it runs in)."""
        if model not in self._grid:
            prof = self.catalog.function_profile(model)
            fits = max(prof.memory_mb[0], self.catalog.model(model).memory_footprint_mb)
            g = [m for m in self.settings.memory_grid_mb
                 if fits <= m and self.fp.min_memory_mb <= m <= self.fp.max_memory_mb]
            self._grid[model] = np.array(g, dtype=float)
        return self._grid[model]

    def _prior_log(self, model: str, batch: int) -> np.ndarray:
        if (model, batch) not in self._prior:
            prof = self.catalog.function_profile(model)
            self._prior[(model, batch)] = np.log([prof.latency_ms(m, batch) for m in self.memory_grid(model)])
        return self._prior[(model, batch)]

    def cold_extra_ms(self, model: str) -> float:
        """What a cold call adds: the platform's container init plus loading the model."""
        return self.fp.container_init_ms + self.catalog.model(model).cold_start_ms

    # --- state ---------------------------------------------------------------------------------
    def initial_state(self) -> TunerState:
        return TunerState()

    def observe(self, state: TunerState, model: str, memory_mb: int, durations_ms: Iterable[float],
                batch_size: int = 1) -> TunerState:
        """Fold measured warm durations (execution only, no cold start) into the state."""
        d = np.asarray(list(durations_ms), dtype=float)
        d = d[np.isfinite(d) & (d > 0)]
        if d.size == 0:
            return state
        stats = {m: dict(v) for m, v in state.stats.items()}
        per = stats.setdefault(model, {})
        old = per.get((int(memory_mb), batch_size))
        s = ConfigStats(*(old.to_list() if old else (0.0, 0.0, 0.0)))
        s.add(np.log(d), self.settings.estimator.forget)
        per[(int(memory_mb), batch_size)] = s
        nm = dict(state.num_measurements)
        nm[model] = nm.get(model, 0) + int(d.size)
        return TunerState(stats, nm)

    # --- analysis ------------------------------------------------------------------------------
    def _evaluate(self, state: TunerState, model: str, slo_ms: float, cold_ratio: float, batch: int = 1):
        st, es = self.settings, self.settings.estimator
        grid = self.memory_grid(model)
        per = state.stats.get(model, {})
        noise = pooled_noise_sd(per, es.noise_sd_log)
        by_mem = {float(m): s for (m, b), s in per.items() if b == batch}
        mu, sd = posterior_log(grid, self._prior_log(model, batch), by_mem, es, noise)
        cold_ms = self.cold_extra_ms(model)
        billed_cold = cold_ms if self.fp.bill_init else 0.0

        def p95(m):
            return p_quantile_ms(m, noise, st.quantile, cold_ratio, cold_ms, self.fp.invoke_overhead_ms)

        def cost(m):
            return expected_cost_usd(m, noise, grid, batch, cold_ratio, billed_cold, self.fp)

        lo, hi = mu - st.z * sd, mu + st.z * sd
        c, c_lo, c_hi = cost(mu), cost(lo), cost(hi)
        l, l_lo, l_hi = p95(mu), p95(lo), p95(hi)
        if st.strategy == "cost":
            j, j_lo, j_hi = c, c_lo, c_hi
        elif st.strategy == "speed":
            j, j_lo, j_hi = l, l_lo, l_hi
        else:  # balanced: the analyzer's normalised weighted sum
            w, cr, lr = st.balanced_weight, c.min(), l.min()
            j = w * c / cr + (1 - w) * l / lr
            j_lo = w * c_lo / cr + (1 - w) * l_lo / lr
            j_hi = w * c_hi / cr + (1 - w) * l_hi / lr
        # Meeting the SLO is judged a little pessimistically (z_slo) so that a size the data
        # barely tell apart from the SLO is not chosen for its optimistic side.
        sure = p95(mu + st.z_slo * sd) <= slo_ms
        return dict(grid=grid, sd=sd, cost=c, p95=l, p95_lo=l_lo, j=j, j_lo=j_lo, j_hi=j_hi,
                    feasible=sure, maybe=l_lo <= slo_ms)

    def _best(self, ev) -> int:
        if ev["feasible"].any():
            idx = np.flatnonzero(ev["feasible"])
            return int(idx[np.argmin(ev["j"][idx])])
        return int(np.argmin(ev["p95"]))  # nothing fits the SLO: the fastest size

    def _open(self, ev, best: int) -> np.ndarray:
        """Indices still worth measuring: could be feasible, could beat the best by > tol
        (or is the best itself), and not yet resolved."""
        plausible = ev["maybe"] & (ev["j_lo"] * (1 + self.settings.tol) < ev["j_hi"][best])
        plausible[best] = True  # the best must itself be known, its feasibility included
        # Near the SLO the choice is set by feasibility, not cost, and neighbouring sizes differ
        # by ~10% in cost: sizes whose SLO verdict is still unclear get measured more finely.
        unclear = ev["maybe"] & ~ev["feasible"]
        need = np.where(unclear, self.settings.boundary_sd_log, self.settings.resolved_sd_log)
        return np.flatnonzero(plausible & (ev["sd"] > need))

    def step(self, state: TunerState, model: str, slo_ms: float, cold_ratio: float,
             rng: np.random.Generator) -> tuple[int | None, TuningChoice]:
        """One evaluation, both answers: the size to measure next (None when converged) and
        the current recommendation. The per-tick call."""
        ev = self._evaluate(state, model, slo_ms, cold_ratio)
        best = self._best(ev)
        open_ = self._open(ev, best)
        choice = TuningChoice(model, int(ev["grid"][best]), float(ev["cost"][best]), float(ev["p95"][best]),
                              bool(ev["feasible"][best]), open_.size == 0,
                              state.num_measurements.get(model, 0))
        if open_.size == 0:
            return None, choice
        sd = ev["sd"][open_]
        top = open_[sd >= sd.max() - 1e-9]  # most uncertain; ties broken at random
        pick = top[rng.integers(top.size)] if top.size > 1 else top[0]
        return int(ev["grid"][pick]), choice

    def propose(self, state: TunerState, model: str, slo_ms: float, cold_ratio: float,
                rng: np.random.Generator) -> int | None:
        """The memory size to measure next, or None when the choice has converged."""
        return self.step(state, model, slo_ms, cold_ratio, rng)[0]

    def recommend(self, state: TunerState, model: str, slo_ms: float, cold_ratio: float) -> TuningChoice:
        """The size to run at now (the analyzer); does not draw from any RNG."""
        return self.step(state, model, slo_ms, cold_ratio, _NO_RNG)[1]


class _NoRng:
    """Stands in for a generator where no draw may happen (recommend)."""

    def integers(self, n):
        return 0


_NO_RNG = _NoRng()


def warm_pool_size(burst_rate_per_s: float, duration_ms: float, *, quantile: float = 0.99,
                   max_pool: int | None = None) -> int:
    """Instances to keep warm so a burst of `burst_rate_per_s` rarely starts cold.

    Little's law gives the mean number of busy instances, L = rate x duration (40 req/s x
    0.25 s = 10); with Poisson arrivals the number busy at once is Poisson(L) (M/G/inf), so the
    pool is its `quantile`: Poisson(10) at 0.99 -> 18 instances."""
    mean_busy = max(0.0, burst_rate_per_s) * max(0.0, duration_ms) / 1000.0
    if mean_busy <= 0:
        return 0
    n = int(poisson.ppf(quantile, mean_busy))
    return min(n, max_pool) if max_pool is not None else n


def burst_beyond_vm_per_s(forecast_upper_per_s: float, vm_usable_capacity_per_s: float) -> float:
    """The forecast rate the VM mix will not absorb: what the function tier must carry."""
    return max(0.0, forecast_upper_per_s - vm_usable_capacity_per_s)


def expected_cold_ratio(rate_per_s: float, duration_ms: float, warm_pool: int) -> float:
    """Share of calls that start cold when `warm_pool` instances are kept warm: the Erlang-loss
    (M/G/c/c) blocking probability of a pool of that size, the calls that find every warm
    instance busy. Used as the tuner's `cold_ratio` from the warm-pool decision."""
    a = max(0.0, rate_per_s) * duration_ms / 1000.0
    if a <= 0:
        return 0.0
    b = 1.0  # Erlang B by the stable recurrence B(c) = a B(c-1) / (c + a B(c-1))
    for c in range(1, int(warm_pool) + 1):
        b = a * b / (c + a * b)
    return float(b)


__all__ = ["DEFAULT_MEMORY_GRID_MB", "FunctionTuner", "TunerSettings", "TunerState", "TuningChoice",
           "warm_pool_size", "burst_beyond_vm_per_s", "expected_cold_ratio"]
