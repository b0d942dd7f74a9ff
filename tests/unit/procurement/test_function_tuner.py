"""Function tuner: fits, SLO with cold starts, online updates, convergence, determinism,
serialization; warm-pool sizing."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from controller.catalog import load_catalog
from controller.config import REPO_ROOT, FunctionPlatformConfig
from procurement.function_tuner import (FunctionTuner, TunerSettings, TunerState, expected_cold_ratio,
                                        warm_pool_size)
from procurement.tuner_estimator import expected_cost_usd, p_quantile_ms

CAT = load_catalog(os.path.join(REPO_ROOT, "configs", "catalog"))
FP = FunctionPlatformConfig()


def tuner(**kw) -> FunctionTuner:
    return FunctionTuner(CAT, FP, TunerSettings(**kw))


def run_online(t: FunctionTuner, model, slo_ms, seed, factor=1.0, budget=200, probe=2, cold=0.01):
    """Measure what propose asks for, from the catalog times `factor` with 10% log-noise."""
    env_rng, rng = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2])
    prof = CAT.function_profile(model)
    state, asked = t.initial_state(), []
    while state.num_measurements.get(model, 0) < budget:
        m = t.propose(state, model, slo_ms, cold, rng)
        if m is None:
            break
        asked.append(m)
        d = prof.latency_ms(m) * factor * np.exp(env_rng.normal(0, 0.1, probe))
        state = t.observe(state, model, m, d)
    return state, asked


def true_cost_p95(t, model, factor=1.0, cold=0.01):
    """Noise-free expected cost and p95 per grid size of the environment run_online measures."""
    grid = t.memory_grid(model)
    mu = np.log([CAT.function_profile(model).latency_ms(m) * factor for m in grid])
    c = t.cold_extra_ms(model)
    cost = expected_cost_usd(mu, 0.1, grid, 1, cold, c, FP)
    p95 = p_quantile_ms(mu, 0.1, 0.95, cold, c, FP.invoke_overhead_ms)
    return dict(zip(grid.astype(int).tolist(), zip(cost, p95)))


def test_memory_grid_only_where_model_fits():
    t = tuner()
    assert t.memory_grid("resnet50").min() == 512  # its process peaks at 488 MB: 512 MB is the first fit
    assert t.memory_grid("squeezenet").min() == 512  # peaks at 279 MB: 256 MB does not fit
    assert t.memory_grid("vgg16").max() == 10240


@pytest.mark.parametrize("model,slo_ms,factor", [("resnet50", 300, 1.0), ("squeezenet", 1000, 1.2),
                                                 ("inception", 300, 0.85)])
def test_converges_near_cost_optimum_with_few_measurements(model, slo_ms, factor):
    t = tuner()
    state, asked = run_online(t, model, slo_ms, seed=3, factor=factor)
    choice = t.recommend(state, model, slo_ms, 0.01)
    assert choice.converged and choice.slo_feasible and choice.p95_ms <= slo_ms
    sweep_n = 10 * t.memory_grid(model).size
    assert state.num_measurements[model] <= sweep_n / 3
    truth = true_cost_p95(t, model, factor)
    best_cost = min(c for c, p in truth.values() if p <= slo_ms)
    cost, p95 = truth[choice.memory_mb]
    # the SLO verdict comes from ~20 noisy samples: at the boundary it may be off by a hair
    assert p95 <= 1.02 * slo_ms and cost <= 1.05 * best_cost


def test_cold_starts_count_in_p95():
    t = tuner()
    s = t.initial_state()
    warm = t.recommend(s, "resnet50", 300, cold_ratio=0.0)
    cold = t.recommend(s, "resnet50", 300, cold_ratio=0.2)  # 20% cold: p95 is a cold call
    assert warm.slo_feasible and warm.p95_ms <= 300
    assert not cold.slo_feasible and cold.p95_ms > 300 + t.cold_extra_ms("resnet50") * 0.9
    assert cold.memory_mb == 10240  # nothing fits: the fastest size


def test_estimates_move_with_measurements_and_neighbours():
    t = tuner()
    s0 = t.initial_state()
    before = t.recommend(s0, "resnet50", 1000, 0.0)
    # resnet50 runs 1.6x slower than the catalog says at 3008 MB
    s = t.observe(s0, "resnet50", 3008, [1.6 * CAT.function_profile("resnet50").latency_ms(3008)] * 8)
    ev0 = t._evaluate(s0, "resnet50", 1000, 0.0)
    ev1 = t._evaluate(s, "resnet50", 1000, 0.0)
    grid = list(ev0["grid"])
    i, j = grid.index(3008), grid.index(4096)
    assert ev1["p95"][i] > 1.4 * ev0["p95"][i]
    assert ev1["p95"][j] > 1.3 * ev0["p95"][j]  # the unmeasured neighbour borrows the ratio
    assert ev1["sd"][i] < ev0["sd"][i] and ev1["sd"][j] < ev0["sd"][j]
    assert t.recommend(s, "resnet50", 1000, 0.0).expected_cost_usd > before.expected_cost_usd


def test_strategies_order_memory():
    s = TunerState()
    # resnet50 keeps speeding up past one vCPU (measured 1.22x from 1 to 2 at batch 1), so the
    # fastest size is the largest; squeezenet does not (1.05x): a second vCPU buys it nothing.
    mem = {st: FunctionTuner(CAT, FP, TunerSettings(strategy=st)).recommend(s, "resnet50", 1000, 0.0).memory_mb
           for st in ("cost", "balanced", "speed")}
    assert mem["cost"] <= mem["balanced"] <= mem["speed"] == 10240
    fastest = FunctionTuner(CAT, FP, TunerSettings(strategy="speed")).recommend(s, "squeezenet", 1000, 0.0)
    assert fastest.memory_mb == 1769
    with pytest.raises(ValueError):
        TunerSettings(strategy="fastest")


def test_deterministic_for_same_seed():
    t = tuner()
    s1, a1 = run_online(t, "mobilenet", 300, seed=11)
    s2, a2 = run_online(t, "mobilenet", 300, seed=11)
    assert a1 == a2 and s1.to_dict() == s2.to_dict()


def test_serialization_round_trip():
    t = tuner()
    s, _ = run_online(t, "caffenet", 300, seed=5, budget=20)
    restored = TunerState.from_dict(json.loads(json.dumps(s.to_dict())))
    assert restored.to_dict() == s.to_dict()
    assert t.recommend(restored, "caffenet", 300, 0.01) == t.recommend(s, "caffenet", 300, 0.01)
    r1, r2 = np.random.default_rng(1), np.random.default_rng(1)
    assert t.propose(restored, "caffenet", 300, 0.01, r1) == t.propose(s, "caffenet", 300, 0.01, r2)


def test_observe_ignores_bad_durations_and_is_pure():
    t = tuner()
    s = t.initial_state()
    s2 = t.observe(s, "resnet50", 4096, [float("nan"), -1.0, 0.0])
    assert s2 is s and s.num_measurements == {}
    s3 = t.observe(s, "resnet50", 4096, [200.0])
    assert s.num_measurements == {} and s3.num_measurements == {"resnet50": 1}


def test_warm_pool_size_littles_law_plus_poisson_margin():
    assert warm_pool_size(40.0, 250.0) == 18  # L = 10; Poisson(10) 99th percentile
    assert warm_pool_size(0.0, 250.0) == 0
    assert warm_pool_size(40.0, 250.0, quantile=0.5) == 10
    assert warm_pool_size(400.0, 250.0, max_pool=50) == 50
    sizes = [warm_pool_size(r, 200.0) for r in (1, 10, 100)]
    assert sizes == sorted(sizes) and sizes[-1] >= 20


def test_expected_cold_ratio_falls_with_pool():
    ratios = [expected_cold_ratio(40.0, 250.0, c) for c in (0, 10, 18, 30)]
    assert ratios[0] == 1.0 and all(a > b for a, b in zip(ratios, ratios[1:]))
    assert ratios[2] < 0.02
