"""Non-uniform configuration solver: equals exhaustive search over bands x candidates on small
cases; respects the SLO and the configuration cap; reduces to the best uniform configuration."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from controller.catalog import load_catalog
from controller.config import FunctionPlatformConfig
from procurement.batching import hold_budget_ms
from procurement.function_configs import (band_spend, breakpoint_levels, build_grid, compress_rates,
                                          expected_batch, solve_configs, solve_for_model)

FP = FunctionPlatformConfig()


def synthetic_latency(base_ms: float, per_item_ms: float):
    """Latency that grows linearly with the batch and falls with memory (CPU) as m^-0.8."""
    def lat(memory_mb, batch):
        if memory_mb < 256:
            return np.inf
        return (base_ms + per_item_ms * batch) * (1769.0 / memory_mb) ** 0.8
    return lat


def exhaustive(grid, rates, weights, max_configs, num_levels):
    """Every partition of [0, inf) at the grid's breakpoints into <= max_configs bands and
    every assignment of candidates to bands: the least total spend per expected request."""
    w = np.asarray(weights, float) / np.sum(weights)
    levels = breakpoint_levels(np.asarray(rates, float), num_levels)
    inner = list(range(1, levels.size - 1))
    mean = float((np.asarray(rates) * w).sum())
    best = np.inf
    for k in range(1, max_configs + 1):
        for cut in itertools.combinations(inner, k - 1):
            idx = [0, *cut, levels.size - 1]
            per_band = [band_spend(grid, np.asarray(rates, float), w, levels[a], levels[b], FP)
                        for a, b in zip(idx[:-1], idx[1:])]
            for choice in itertools.product(range(len(grid)), repeat=k):
                best = min(best, sum(pb[c] for pb, c in zip(per_band, choice)))
    return best / mean


@pytest.mark.parametrize("seed", range(6))
def test_solver_equals_exhaustive_search(seed):
    rng = np.random.default_rng(seed)
    lat = synthetic_latency(rng.uniform(20, 80), rng.uniform(2, 30))
    grid = build_grid(lat, [512, 1024, 2048], [1, 2, 4, 8], slo_ms=float(rng.uniform(250, 400)),
                      wait_grid_ms=(0, 30, 100), overhead_ms=10)
    assert 0 < len(grid) <= 12
    # bursty spill: a steady part and occasional bursts
    rates = np.concatenate([rng.gamma(3, rng.uniform(1, 8), 12), rng.uniform(40, 150, 3)])
    max_k, levels = 3, 4
    plan = solve_configs(grid, rates, FP, max_configs=max_k, num_levels=levels)
    assert plan.expected_cost_per_request_usd == pytest.approx(exhaustive(grid, rates, np.ones_like(rates), max_k,
                                                                          levels), rel=1e-9)
    assert 1 <= len(plan.configs) <= max_k
    assert sum(c.share for c in plan.configs) == pytest.approx(1.0)
    # band costs add up to the total
    assert sum(c.share * c.cost_per_request_usd for c in plan.configs) == pytest.approx(
        plan.expected_cost_per_request_usd, rel=1e-9)


def test_uniform_is_the_best_single_candidate_and_non_uniform_never_worse():
    rng = np.random.default_rng(7)
    lat = synthetic_latency(40, 12)
    grid = build_grid(lat, [512, 1024, 2048, 3008], [1, 2, 4, 8, 16], slo_ms=300, overhead_ms=10)
    rates = np.concatenate([rng.normal(15, 2, 40).clip(0), rng.uniform(60, 120, 5)])
    uni = solve_configs(grid, rates, FP, max_configs=1)
    w = np.ones_like(rates) / rates.size
    direct = band_spend(grid, rates, w, 0.0, np.inf, FP).min() / rates.mean()
    assert uni.expected_cost_per_request_usd == pytest.approx(direct, rel=1e-9)
    non = solve_configs(grid, rates, FP, max_configs=3)
    assert non.expected_cost_per_request_usd <= uni.expected_cost_per_request_usd * (1 + 1e-12)


def test_every_chosen_configuration_meets_the_slo():
    lat = synthetic_latency(60, 20)
    slo = 250.0
    grid = build_grid(lat, [512, 1024, 2048, 4096], [1, 2, 4, 8, 16, 32], slo_ms=slo, overhead_ms=15)
    plan = solve_configs(grid, np.array([5.0, 30.0, 80.0]), FP)
    for c in plan.configs:
        assert c.exec_ms + 15 + c.hold_ms <= slo + 1e-9
        assert c.hold_ms == pytest.approx(hold_budget_ms(slo - 15, c.wait_ms, c.exec_ms))


def test_nothing_fits_gives_none():
    grid = build_grid(synthetic_latency(500, 10), [512, 1024], [1, 2], slo_ms=100)
    assert len(grid) == 0 and solve_configs(grid, [10.0], FP) is None


def test_expected_batch_limits():
    assert expected_batch(0.0, 0.1, 8) == pytest.approx(1.0)
    assert expected_batch(1e6, 0.1, 8) == pytest.approx(8.0)
    assert expected_batch(50.0, 0.1, 1) == pytest.approx(1.0)
    # b = 2: 1 + P(N >= 1) = 2 - exp(-L), L = 5 x 0.1
    assert expected_batch(5.0, 0.1, 2) == pytest.approx(2 - np.exp(-0.5))


def test_compress_keeps_the_mean_rate():
    rng = np.random.default_rng(1)
    r = rng.gamma(2, 10, 1000)
    rs, ws = compress_rates(r, np.full(r.size, 1e-3), 48)
    assert rs.size == 48 and (rs * ws).sum() == pytest.approx(r.mean())


def test_solve_for_catalog_model():
    cat = load_catalog("configs/catalog")
    rates = np.random.default_rng(0).gamma(4, 5, 200)
    plan = solve_for_model(cat, "squeezenet", FP, rates, 300.0)
    assert plan is not None and plan.configs
    prof = cat.function_profile("squeezenet")
    for c in plan.configs:
        assert prof.latency_ms(c.memory_mb, c.batch_size) + FP.invoke_overhead_ms + c.hold_ms <= 300 + 1e-6


def test_non_uniform_strictly_wins_when_big_batches_need_more_memory():
    # a low steady spill (0.5-3 req/s) under rare bursts (20-200 req/s); a batch needs 256 MB
    # plus 50 MB per request, so batch 32 needs >= 2048 MB. The steady part is cheaper on a
    # small configuration, the bursts on the big one (about 1.8% here).
    def lat(memory_mb, batch):
        if memory_mb < 256 + 50 * batch:
            return np.inf
        return (20 + 5 * batch) * (1769.0 / memory_mb) ** 0.8
    rng = np.random.default_rng(29)
    grid = build_grid(lat, [512, 1024, 2048, 3008, 4096], [1, 2, 4, 8, 16, 32], slo_ms=300, overhead_ms=10)
    rates = np.concatenate([rng.uniform(0.5, 3, 40), rng.uniform(20, 200, 8)])
    uni = solve_configs(grid, rates, FP, max_configs=1)
    non = solve_configs(grid, rates, FP, max_configs=3)
    assert len(non.configs) >= 2
    assert non.expected_cost_per_request_usd < uni.expected_cost_per_request_usd * 0.995
    bottom, top = non.configs[0], non.configs[-1]
    assert bottom.memory_mb < top.memory_mb and bottom.batch_size < top.batch_size


def test_bands_fill_first():
    # Band [0, 10) takes the first 10 req/s, band [10, inf) the rest: at 4 req/s the top band
    # is idle, at 40 req/s the bottom is full (10) and the top takes 40 - 10 = 30.
    from procurement.function_configs import _band_rates
    rates = np.array([4.0, 40.0])
    assert _band_rates(rates, 0.0, 10.0).tolist() == [4.0, 10.0]
    assert _band_rates(rates, 10.0, np.inf).tolist() == [0.0, 30.0]