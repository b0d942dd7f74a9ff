"""Non-uniform function configurations (INFless): per model, a small set of (memory, batch size,
wait) configurations and the part of the spill rate each takes, at least expected cost per
request under the SLO. Pure; exact over a discretised grid.

Model. The spill rate is uncertain (bursty): it is given as samples r_s (req/s, e.g. per-second
rates from the forecast or recent history) with weights p_s. The rate is cut into at most
`max_configs` bands [B_0=0, B_1), [B_1, B_2), ..., [B_k, inf), routed fill-first: a request
goes to the lowest band whose quota is not used up, so in scenario s band [lo, hi) receives
clip(r_s - lo, 0, hi - lo) req/s. The bottom band sees a steady rate (a large batch fills
there), the top band only the tail of bursts (a small batch wastes less there). Each band runs
one configuration c = (memory m, batch b, wait w) with its own batch queue (procurement.batching):

  hold_ms  = min(w, SLO - exec(m, b) - invoke overhead - cold_ms)   (must be >= 0)
  E[batch] = E[min(1 + N, b)], N ~ Poisson(rate x hold): the first request opens the batch,
             arrivals during the hold join it, up to b. With m = b - 1 and L = rate x hold,
             E[min(N, m)] = L P(N <= m-1) + m P(N > m)      (E[N 1{N<=m}] = L P(N <= m-1))
  $/req    = charge(exec(m, E[batch]), m) / E[batch]       (one invocation per batch)

(exec at the mean batch size, interpolated between profiled sizes, stands in for the mean of
exec over the batch-size distribution; exec is near-linear in the batch, so the error is small.)
A band's expected spend per second is sum_s p_s rate_s $/req(rate_s); the objective is the
total spend over the expected spill rate. Bands are independent given their breakpoints, so the
optimum over breakpoints from a grid of `num_levels` rates and configurations from the grid is
a shortest path (dynamic programming over breakpoints): exact for the discretised problem, and
equal to exhaustive search (tests check). With max_configs=1 it is the best uniform configuration.

Under a pure cost objective a longer wait never costs more (fuller batches, the SLO still held
by the hold budget), so the solver takes the longest wait the grid allows; `wait_grid_ms` is
how an operator caps queueing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy.special import pdtr, pdtrc  # Poisson cdf / sf as plain ufuncs (far cheaper than scipy.stats)

from controller.ledger import function_charge_usd

DEFAULT_WAIT_GRID_MS = (0.0, 10.0, 25.0, 50.0, 100.0, 200.0)


@dataclass(frozen=True)
class FunctionConfig:
    memory_mb: int
    batch_size: int
    wait_ms: float
    hold_ms: float  # the queueing the SLO actually allows: min(wait, slack)
    exec_ms: float  # at batch_size: the latency every batch stays within
    rate_lo_per_s: float  # the band of the spill rate this configuration takes (fill-first)
    rate_hi_per_s: float  # inf for the top band
    share: float  # expected fraction of spilled requests served here
    expected_batch: float
    cost_per_request_usd: float  # expected, within this band


@dataclass(frozen=True)
class ConfigPlan:
    configs: tuple[FunctionConfig, ...]  # bottom band first
    expected_cost_per_request_usd: float
    mean_rate_per_s: float


@dataclass(frozen=True)
class ConfigGrid:
    """Feasible candidate configurations as parallel arrays."""

    memory_mb: np.ndarray
    batch: np.ndarray
    wait_ms: np.ndarray
    hold_s: np.ndarray
    exec_ms: np.ndarray
    lat_table: np.ndarray  # per candidate: latency at each of `batches` (for fractional batches)
    batches: np.ndarray

    def __len__(self) -> int:
        return int(self.memory_mb.size)


def build_grid(latency_ms: Callable[[float, int], float], memory_grid_mb: Sequence[float],
               batches: Sequence[int], slo_ms: float, *, wait_grid_ms: Sequence[float] = DEFAULT_WAIT_GRID_MS,
               overhead_ms: float = 0.0, cold_ms: float = 0.0) -> ConfigGrid:
    """Candidates whose batch at full size fits the SLO with a non-negative hold budget.

    latency_ms(memory_mb, batch): warm execution latency (e.g. FunctionProfile.latency_ms);
    inf where the model does not fit. A batch > 1 with zero hold would only ever run single
    requests, at the cost of the batch-1 configuration: dropped as dominated."""
    batches = np.array(sorted(set(int(b) for b in batches)))
    rows = []
    for m in memory_grid_mb:
        lat = np.array([latency_ms(m, int(b)) for b in batches], dtype=float)
        fits = np.isfinite(lat)  # a batch may need more memory than a single request
        if not fits[0]:
            continue
        lat = np.maximum.accumulate(np.where(fits, lat, 0.0))  # a bigger batch never finishes sooner
        lat = np.where(np.cumprod(fits) > 0, lat, lat[fits].max())  # beyond the first misfit: unused
        for bi, b in enumerate(batches):
            if not fits[:bi + 1].all():
                break
            slack = slo_ms - lat[bi] - overhead_ms - cold_ms
            if slack < 0:
                continue
            # Cost never rises with the hold (fuller batches), so of each (memory, batch) only the
            # wait giving the longest hold is a candidate; of waits giving the same hold, the shortest.
            holds = [(min(float(x), slack), -float(x)) for x in wait_grid_ms]
            hold, neg_w = max(holds)
            if b > 1 and hold <= 0:
                continue
            rows.append((m, b, -neg_w, hold / 1000.0, lat[bi], lat))
    if not rows:
        return ConfigGrid(*(np.zeros(0) for _ in range(5)), np.zeros((0, batches.size)), batches)
    mem, b, w, h, e, tab = zip(*rows)
    return ConfigGrid(np.array(mem, float), np.array(b, int), np.array(w, float), np.array(h, float),
                      np.array(e, float), np.array(tab), batches)


def expected_batch(rate_per_s, hold_s, batch_size):
    """E[min(1 + N, b)], N ~ Poisson(rate x hold) (broadcasting)."""
    lam = np.asarray(rate_per_s, dtype=float) * np.asarray(hold_s, dtype=float)
    m = np.asarray(batch_size, dtype=float) - 1.0
    e_min = lam * pdtr(np.maximum(m - 1.0, 0.0), lam) + m * pdtrc(np.maximum(m, 0.0), lam)
    return 1.0 + np.where(m > 0, e_min, 0.0)


def _interp_rows(x: np.ndarray, xp: np.ndarray, fp_rows: np.ndarray) -> np.ndarray:
    """np.interp of each row of `x` against its own row of `fp_rows` (shared `xp`), at once."""
    x = np.clip(x, xp[0], xp[-1])
    hi = np.clip(np.searchsorted(xp, x, side="left"), 1, xp.size - 1) if xp.size > 1 else np.zeros(x.shape, int)
    if xp.size == 1:
        return np.broadcast_to(fp_rows[:, :1], x.shape).copy()
    lo = hi - 1
    y_lo = np.take_along_axis(fp_rows, lo, axis=1)
    y_hi = np.take_along_axis(fp_rows, hi, axis=1)
    t = (x - xp[lo]) / (xp[hi] - xp[lo])
    return y_lo + t * (y_hi - y_lo)


def compress_rates(rates: np.ndarray, weights: np.ndarray, max_points: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """At most `max_points` weighted rates standing for the samples: the weighted mean of each
    equal-count slice of the sorted samples (the mean rate is kept exactly)."""
    if rates.size <= max_points:
        return rates, weights
    order = np.argsort(rates)
    r, w = rates[order], weights[order]
    parts = np.array_split(np.arange(r.size), max_points)
    ws = np.array([w[p].sum() for p in parts])
    rs = np.array([(r[p] * w[p]).sum() / max(w[p].sum(), 1e-300) for p in parts])
    return rs, ws


def cost_per_request_usd(grid: ConfigGrid, rate_per_s: np.ndarray, fp, cold_ratio: float = 0.0,
                         cold_billed_ms: float = 0.0) -> np.ndarray:
    """$ per request of every candidate (rows) at every rate (columns)."""
    r = np.asarray(rate_per_s, dtype=float)[None, :]
    nb = expected_batch(r, grid.hold_s[:, None], grid.batch[:, None])
    exec_ms = _interp_rows(nb, grid.batches, grid.lat_table)
    mem = grid.memory_mb[:, None]
    warm = function_charge_usd(exec_ms, mem, fp)
    cold = function_charge_usd(exec_ms + cold_billed_ms, mem, fp) if cold_ratio > 0 else warm
    return ((1.0 - cold_ratio) * warm + cold_ratio * cold) / nb


def _band_rates(rates: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip(rates - lo, 0.0, hi - lo)


def band_spend(grid: ConfigGrid, rates: np.ndarray, weights: np.ndarray, lo: float, hi: float, fp,
               cold_ratio: float = 0.0, cold_billed_ms: float = 0.0) -> np.ndarray:
    """Expected $ per second of each candidate serving band [lo, hi)."""
    rb = _band_rates(rates, lo, hi)
    if not np.any(rb > 0):
        return np.zeros(len(grid))
    c = cost_per_request_usd(grid, rb, fp, cold_ratio, cold_billed_ms)
    return (c * (rb * weights)[None, :]).sum(axis=1)


def breakpoint_levels(rates: np.ndarray, num_levels: int) -> np.ndarray:
    """Candidate breakpoints: 0, then `num_levels - 1` quantiles of the samples and as many
    evenly spaced rates up to the largest (quantiles resolve a low steady part under rare
    large bursts, even spacing the bursts), then inf."""
    top = float(np.max(rates)) if rates.size else 0.0
    if top <= 0:
        return np.array([0.0, np.inf])
    even = np.linspace(0.0, top, num_levels + 1)[1:-1]
    quant = np.quantile(rates, np.arange(1, num_levels) / num_levels)
    inner = np.unique(np.round(np.concatenate([even, quant]), 9))
    inner = inner[(inner > 0) & (inner < top)]
    return np.concatenate([[0.0], inner, [np.inf]])


def solve_configs(grid: ConfigGrid, rates_per_s: Sequence[float], fp, *, weights: Sequence[float] | None = None,
                  max_configs: int = 3, num_levels: int = 12, cold_ratio: float = 0.0,
                  cold_billed_ms: float = 0.0) -> ConfigPlan | None:
    """The least expected cost per request over at most `max_configs` bands; None when no
    candidate fits the SLO. Exact dynamic programme over breakpoints x candidates."""
    rates = np.asarray(rates_per_s, dtype=float)
    w = np.ones_like(rates) if weights is None else np.asarray(weights, dtype=float)
    w = w / w.sum()
    rates, w = compress_rates(rates, w)
    mean_rate = float((rates * w).sum())
    if len(grid) == 0:
        return None
    levels = breakpoint_levels(rates, num_levels)
    n = levels.size
    # spend[i, j] / arg[i, j]: the best candidate for band [levels[i], levels[j]) (j > i)
    spend = np.full((n, n), np.inf)
    arg = np.zeros((n, n), dtype=int)
    for i in range(n - 1):
        for j in range(i + 1, n):
            s = band_spend(grid, rates, w, levels[i], levels[j], fp, cold_ratio, cold_billed_ms)
            arg[i, j] = int(np.argmin(s))  # ties: the first candidate (smallest memory, batch)
            spend[i, j] = s[arg[i, j]]
    # best[k, j]: least spend covering [0, levels[j]) with k bands
    best = np.full((max_configs + 1, n), np.inf)
    back = np.zeros((max_configs + 1, n), dtype=int)
    best[0, 0] = 0.0
    for k in range(1, max_configs + 1):
        for j in range(1, n):
            cand = best[k - 1, :j] + spend[:j, j]
            i = int(np.argmin(cand))
            best[k, j], back[k, j] = cand[i], i
    # fewer bands win ties (a simpler plan for the same cost)
    k_best = min(range(1, max_configs + 1), key=lambda k: (best[k, n - 1] * (1 + 1e-12 * k), k))
    cuts, j = [], n - 1
    for k in range(k_best, 0, -1):
        i = back[k, j]
        cuts.append((i, j))
        j = i
    cuts.reverse()
    configs = []
    for i, j in cuts:
        lo, hi = levels[i], levels[j]
        c = arg[i, j]
        rb = _band_rates(rates, lo, hi)
        served = float((rb * w).sum())
        cpr = spend[i, j] / served if served > 0 else float(
            cost_per_request_usd(grid, np.array([0.0]), fp, cold_ratio, cold_billed_ms)[c, 0])
        nb = float((expected_batch(rb, grid.hold_s[c], grid.batch[c]) * rb * w).sum() / served) if served > 0 else 1.0
        configs.append(FunctionConfig(int(grid.memory_mb[c]), int(grid.batch[c]), float(grid.wait_ms[c]),
                                      float(grid.hold_s[c] * 1000.0), float(grid.exec_ms[c]), float(lo), float(hi),
                                      served / mean_rate if mean_rate > 0 else (1.0 if not configs else 0.0),
                                      nb, float(cpr)))
    total = best[k_best, n - 1] / mean_rate if mean_rate > 0 else configs[0].cost_per_request_usd
    return ConfigPlan(tuple(configs), float(total), mean_rate)


def solve_for_model(catalog, model: str, fp, rates_per_s: Sequence[float], slo_ms: float, *,
                    memory_grid_mb: Sequence[float] | None = None, wait_grid_ms: Sequence[float] = DEFAULT_WAIT_GRID_MS,
                    cold_ms: float = 0.0, cold_ratio: float = 0.0, max_configs: int = 3,
                    num_levels: int = 12, weights: Sequence[float] | None = None) -> ConfigPlan | None:
    """`solve_configs` from the catalog's function profile of `model` (per-batch memory curves),
    over the function tuner's memory grid where the model fits. cold_ms: cold start to budget
    inside the SLO (0 when a warm pool is kept); cold_ratio: share of invocations billed cold."""
    from procurement.function_tuner import DEFAULT_MEMORY_GRID_MB

    prof = catalog.function_profile(model)
    if prof is None:
        return None
    fits = max(float(prof.memory_mb[0]), float(catalog.model(model).memory_footprint_mb))
    grid_mb = [m for m in (memory_grid_mb or DEFAULT_MEMORY_GRID_MB)
               if m >= fits and fp.min_memory_mb <= m <= fp.max_memory_mb]
    grid = build_grid(prof.latency_ms, grid_mb, sorted(prof.by_batch), slo_ms, wait_grid_ms=wait_grid_ms,
                      overhead_ms=fp.invoke_overhead_ms, cold_ms=cold_ms)
    billed_cold = (fp.container_init_ms + catalog.model(model).cold_start_ms) if fp.bill_init else 0.0
    return solve_configs(grid, rates_per_s, fp, weights=weights, max_configs=max_configs, num_levels=num_levels,
                         cold_ratio=cold_ratio, cold_billed_ms=billed_cold)


__all__ = ["compress_rates", "FunctionConfig", "ConfigPlan", "ConfigGrid", "build_grid", "expected_batch", "cost_per_request_usd",
           "band_spend", "breakpoint_levels", "solve_configs", "solve_for_model", "DEFAULT_WAIT_GRID_MS"]
