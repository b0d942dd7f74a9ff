"""The tune analyzer: Power Tuning's strategies, the SLO, 2 GB normalisation, instance advice,
and agreement with an exhaustive sweep over the same measurements."""
import csv
import math
import os

import numpy as np
import pytest

from controller.ledger import function_charge_usd
from controller.tuning.analyzer import STRATEGIES, choose, recommend_instances, tune_app


def _sweep(mem, lat, cost, ok, strategy, weight):
    """Brute force, written independently: every candidate scored by a full sort key."""
    cand = [i for i in range(len(mem)) if ok[i]] or list(range(len(mem)))
    max_c = max(cost[i] for i in cand)
    max_l = max(lat[i] for i in cand)

    def key(i):
        if strategy == "cost":
            return (cost[i], lat[i], mem[i])
        if strategy == "speed":
            return (lat[i], cost[i], mem[i])
        return (weight * cost[i] / max_c + (1 - weight) * lat[i] / max_l, mem[i])
    return min(cand, key=key)


def test_choose_agrees_with_exhaustive_sweep_on_random_tables():
    rng = np.random.default_rng(7)
    for trial in range(300):
        n = int(rng.integers(1, 9))
        mem = sorted(rng.choice([128, 256, 512, 1024, 1769, 2048, 3008, 4096, 10240], n, replace=False).tolist())
        lat = rng.choice([50.0, 80.0, 120.0, 200.0, 400.0], n).tolist()  # repeated values exercise ties
        cost = [round(m * l / 1e6, 6) for m, l in zip(mem, lat)]
        ok = (rng.random(n) < 0.6).tolist()
        for s in STRATEGIES:
            w = float(rng.choice([0.0, 0.25, 0.5, 0.9, 1.0]))
            assert choose(mem, lat, cost, ok, s, w) == _sweep(mem, lat, cost, ok, s, w), (trial, s, w)


def test_balanced_weight_ends_are_cost_and_speed():
    mem, lat = [512, 1024, 2048, 4096], [400.0, 190.0, 100.0, 60.0]
    cost = [m * l for m, l in zip(mem, lat)]  # 204800, 194560, 204800, 245760
    ok = [True] * 4
    assert choose(mem, lat, cost, ok, "balanced", 1.0) == choose(mem, lat, cost, ok, "cost") == 1
    assert choose(mem, lat, cost, ok, "balanced", 0.0) == choose(mem, lat, cost, ok, "speed") == 3
    # w = 0.5: 0.5 x cost/245760 + 0.5 x lat/400 -> 1024: .396 + .2375 = .633; 2048: .417 + .125 = .542
    assert choose(mem, lat, cost, ok, "balanced", 0.5) == 2


def test_slo_restricts_candidates_and_falls_back_when_none_fits():
    mem, lat, cost = [512, 1024, 2048], [400.0, 200.0, 100.0], [1.0, 1.5, 2.0]
    assert choose(mem, lat, cost, [False, True, True], "cost") == 1
    assert choose(mem, lat, cost, [False, False, False], "cost") == 0


@pytest.mark.parametrize("bad", [dict(strategy="cheap"), dict(weight=1.5)])
def test_bad_strategy_or_weight(bad):
    with pytest.raises(ValueError):
        choose([1], [1], [1], [True], bad.get("strategy", "balanced"), bad.get("weight", 0.5))


@pytest.mark.parametrize("strategy,weight", [("cost", 0.5), ("speed", 0.5), ("balanced", 0.3), ("balanced", 0.8)])
def test_tune_app_agrees_with_sweep_over_the_catalog_csv(config, catalog, strategy, weight):
    """Read function_latency.csv afresh, cost every row with the ledger, pick by brute force."""
    app = config.apps[0]
    res = tune_app(catalog, config, app.name, strategy=strategy, weight=weight)
    with open(os.path.join(catalog.directory, "function_latency.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    floor_models = {m.name for m in catalog.models_meeting(app.min_accuracy)}
    assert {mt.model for mt in res.models} == floor_models
    checked = 0
    for mt in res.models:
        for b, recs in mt.recommendations.items():
            cells = [r for r in rows if r["model"] == mt.model and int(r["batch_size"]) == b]
            mem = [int(r["memory_mb"]) for r in cells]
            lat = [float(r["latency_ms"]) for r in cells]
            cost = [function_charge_usd(l, m, config.functions) / b for m, l in zip(mem, lat)]
            ok = [l + config.functions.invoke_overhead_ms <= app.slo_ms for l in lat]
            i = _sweep(mem, lat, cost, ok, strategy, weight)
            assert recs[strategy].memory_mb == mem[i], (mt.model, b)
            assert recs[strategy].cost_per_request_usd == pytest.approx(cost[i])
            checked += 1
    assert checked >= 20


def test_normalised_cost_is_one_at_2gb_and_follows_the_formula(config, catalog):
    res = tune_app(catalog, config, config.apps[0].name)
    mt = next(m for m in res.models if m.model == "resnet18")
    pts = {p.memory_mb: p for p in mt.points if p.batch == 1}
    assert pts[2048].normalised_cost == pytest.approx(1.0)
    p = pts[4096]
    assert p.normalised_cost == pytest.approx(4096 / 2048 * p.latency_ms / pts[2048].latency_ms)


def test_instance_advice_covers_the_rate_at_least_cost(catalog):
    rate, util, slo = 137.0, 0.8, 300.0
    out = recommend_instances(catalog, "resnet18", rate, slo, target_utilization=util)
    assert out and [c.usd_per_h for c in out] == sorted(c.usd_per_h for c in out)
    for c in out:
        assert c.count * c.capacity_per_s * util >= rate - 1e-6
        assert (c.count - 1) * c.capacity_per_s * util < rate
        assert catalog.vm_profile("resnet18", c.instance_type).latency_at(c.batch) <= slo
    # brute force: the cheapest hourly bill over every type with a profile
    best = math.inf
    for t, it in catalog.instance_types.items():
        got = catalog.vm_cost_per_request_usd("resnet18", t, slo)
        if got:
            cap = catalog.vm_profile("resnet18", t).capacity_per_s(got[1])
            best = min(best, math.ceil(rate / (cap * util)) * it.on_demand_usd_per_h)
    assert out[0].usd_per_h == pytest.approx(best)


def test_unknown_app_names_the_known_ones(config, catalog):
    with pytest.raises(ValueError, match="unknown app 'nope'.*image-classify"):
        tune_app(catalog, config, "nope")
