"""A partitioned deployment as one more way to serve a variant on the function tier (issue 13):
the planner's chain is chosen where no single function fits the memory cap or where it is
cheaper, the simulator serves it with the plan's latency and bills every hop, and under the
default limits (a single function is cheaper) nothing changes."""
import os
import shutil
from dataclasses import replace

import numpy as np
import pytest

from controller.catalog import load_catalog
from controller.config import FunctionPlatformConfig
from controller.core import FunctionView, Observation, PolicyContext, QueryClass, SetFunctionConfig
from controller.ledger import function_charge_usd
from controller.sim.function_tier import FunctionTier
from controller.sim.run import simulate
from controller.trace import load_trace, prepare
from procurement.function_plan import partition_option, partitioned_config, use_partitioned
from procurement.partition_planner import chain_cold_ms

SLO_MS = 3000.0


@pytest.fixture(scope="module")
def graphs(catalog):
    return {m: g for m in catalog.model_names if (g := catalog.layer_graph(m)) is not None}


@pytest.fixture(scope="module")
def vgg_catalog(tmp_path_factory):
    """The catalog with vgg16 as its only variant (so every request of the class is vgg16's)."""
    from controller.config import REPO_ROOT
    src = os.path.join(REPO_ROOT, "configs", "catalog")
    dst = tmp_path_factory.mktemp("catalog")
    for name in ("instance_types.csv", "vm_latency.csv", "function_latency.csv"):
        shutil.copy(os.path.join(src, name), dst / name)
    shutil.copytree(os.path.join(src, "model_graphs"), dst / "model_graphs")
    with open(os.path.join(src, "models.csv")) as fh:
        lines = fh.read().splitlines()
    (dst / "models.csv").write_text("\n".join([lines[0]] + [ln for ln in lines if ln.startswith("vgg16,")]) + "\n")
    return load_catalog(str(dst))


def _config(config, catalog, cap_mb, duration_s=600, rate_scale=1.0, max_vms=None):
    vms = {} if max_vms is None else {"max_instances": max_vms, "instance_types": ["c5.large"]}
    return config.model_copy(update={
        "catalog": config.catalog.model_copy(update={"dir": catalog.directory}),
        "apps": [config.apps[0].model_copy(update={"slo_ms": SLO_MS, "min_accuracy": 0.70})],
        "functions": config.functions.model_copy(update={"max_memory_mb": cap_mb}),
        "vms": config.vms.model_copy(update=vms),
        "simulator": config.simulator.model_copy(update={"duration_s": duration_s, "rate_scale": rate_scale})})


def test_partitioned_only_where_no_single_function_fits_or_it_is_cheaper(graphs):
    capped = FunctionPlatformConfig(max_memory_mb=1024)
    plan = partition_option(graphs["vgg16"], SLO_MS, capped)
    assert plan is not None and plan.num_partitions > 1 and use_partitioned(plan, single_feasible=False)
    assert all(p.memory_mb <= 1024 and p.footprint_mb <= p.memory_mb for p in plan.partitions)
    assert plan.latency_ms <= SLO_MS
    rec = partitioned_config("vgg16", plan, warm_pool=2)
    assert rec.memory_mb == 1024 and rec.partition_plan is plan and rec.batch_size == 1
    # At 3,008 MB one function holds vgg16 and is the cheapest: the planner keeps it whole.
    single = partition_option(graphs["vgg16"], SLO_MS, FunctionPlatformConfig(max_memory_mb=3008))
    assert single.num_partitions == 1 and not use_partitioned(single, single_feasible=True)
    assert single.cost_usd < plan.cost_usd  # splitting costs invocations and transfers
    # No variant is ever split under the default limits (10,240 MB) at these SLOs.
    fp = FunctionPlatformConfig()
    for model, graph in graphs.items():
        for slo_ms in (300.0, 1000.0, SLO_MS):
            p = partition_option(graph, slo_ms, fp)
            assert p is None or p.num_partitions == 1, (model, slo_ms, p.describe())
    assert partition_option(None, SLO_MS, fp) is None


def test_function_tier_serves_the_chain_and_bills_every_hop(catalog, graphs):
    fp = FunctionPlatformConfig(max_memory_mb=1024)
    plan = partition_option(graphs["vgg16"], SLO_MS, fp)
    tier = FunctionTier("vgg16", catalog, fp, np.random.default_rng(0))
    init_usd = tier.configure([partitioned_config("vgg16", plan, warm_pool=1)])
    # A cold hop: 800 ms of container init plus its share (by weights) of vgg16's 12,885 ms load
    # (models.csv); billed at the hop's memory. By hand, not through chain_cold_ms/charge_usd,
    # which the tier itself calls.
    weights_mb = [p.weights_mb for p in plan.partitions]
    cold_ms = [800.0 + 12_885.0 * w / sum(weights_mb) for w in weights_mb]
    cold_usd = sum(ms / 1000 * p.memory_mb / 1024 * 0.0000166667 for ms, p in zip(cold_ms, plan.partitions))
    assert sum(cold_ms) == pytest.approx(3 * 800.0 + 12_885.0)
    assert init_usd == pytest.approx(cold_usd)
    assert cold_ms == pytest.approx(chain_cold_ms(plan, fp, catalog.model("vgg16").cold_start_ms))
    # Every hop's instance is pinged at its own memory: 1 ms of GB-s plus the request fee, every
    # 300 s (by hand: the tier bills pings through function_charge_usd).
    assert tier.prewarm_cost_per_s() == pytest.approx(
        sum(0.001 * p.memory_mb / 1024 * 0.0000166667 + 0.0000002 for p in plan.partitions) / 300.0)
    # Two requests at once: the first finds the warm chain, the second starts every hop cold.
    ok, lat, cold, cost = tier.serve(0, np.array([0.1, 0.1]), limit=1000)
    assert ok.all() and cold.tolist() == [False, True]
    assert lat[0] == pytest.approx(plan.latency_ms) and cost[0] == pytest.approx(plan.cost_usd)
    assert lat[1] == pytest.approx(plan.latency_ms + sum(cold_ms))
    assert cost[1] == pytest.approx(plan.cost_usd + cold_usd)
    # plan.cost_usd is every hop's GB-s at its memory plus one invocation each (the ledger rounds
    # each hop up to the billing granularity; the plan does not) plus its store requests (none here)
    assert not any(p.out_via_store for p in plan.partitions)
    hop_usd = sum(function_charge_usd(p.billed_ms, p.memory_mb, fp) for p in plan.partitions)
    one_ms_usd = sum(p.memory_mb / 1024 * 0.001 * fp.price_usd_per_gb_s for p in plan.partitions)
    assert hop_usd - one_ms_usd - 1e-15 <= plan.cost_usd <= hop_usd + 1e-15  # at most 1 ms rounded per hop
    # The single-function alternative under the same cap cannot run at all.
    single = FunctionTier("vgg16", catalog, fp, np.random.default_rng(0))
    single.configure([SetFunctionConfig("vgg16", 1024, 1)])
    assert not single.deployed


def _empty_obs(models, n_classes, now_s=0.0):
    return Observation(now_s, 10.0, tuple(models), np.zeros((0, len(models))), np.zeros((0, n_classes)),
                       (), {}, {}, {})


@pytest.mark.parametrize("cap_mb,split", [(1024, True), (10240, False)])
def test_hybrid_emits_the_choice_as_data(config, catalog, cap_mb, split):
    from procurement.hybrid import Hybrid
    cfg = _config(config, catalog, cap_mb)
    ctx = PolicyContext(cfg, catalog, (QueryClass("c", SLO_MS, 0.70, 1.0),))
    policy = Hybrid(ctx)
    rng = np.random.default_rng(0)
    models = [m.name for m in catalog.models]
    plan, state = policy.decide(_empty_obs(models, 1), policy.initial_state(ctx, rng), rng)
    (rec,) = [f for f in plan.functions if f.model == "vgg16"]
    assert (rec.partition_plan is not None) == split
    if not split:
        assert all(f.partition_plan is None for f in plan.functions)  # every variant stays whole
    else:
        assert rec.partition_plan.num_partitions > 1 and rec.memory_mb <= cap_mb
        assert state.partition_plans["vgg16"] is rec.partition_plan
        # The selector's cost prior for vgg16 (not the warm-start variant) is the chain's cost.
        cs = policy.selector()._state.classes[0]
        arm = list(cs.arm_models).index(catalog.model_index["vgg16"])
        assert cs.prior_cost_usd[arm] == pytest.approx(rec.partition_plan.cost_usd)
        assert cs.prior_slo_met[arm] == pytest.approx(0.5)
        # A second tick with nothing changed (the chain deployed as asked) re-sends nothing.
        obs = _empty_obs(models, 1, 10.0)
        deployed = {f.model: FunctionView(f.model, f.memory_mb, f.warm_pool, 0, 0, 0, 0.0) for f in plan.functions}
        plan2, _ = policy.decide(replace(obs, functions=deployed), state, rng)
        assert not [f for f in plan2.functions if f.model == "vgg16"]
    (route,) = [r for r in plan.routes if r.model == "vgg16"]
    assert route.spill


def test_simulated_chain_under_a_memory_cap_meets_the_slo_where_no_function_can(config, vgg_catalog):
    # Five times the trace on one c5.large: the VM cannot keep up, the rest must spill.
    cfg = _config(config, vgg_catalog, 1024, duration_s=300, rate_scale=5.0, max_vms=1)
    runs = {mode: simulate(cfg, vgg_catalog, "wits", ["hybrid"], jobs=1,
                           policy_kwargs={"hybrid": {"function_partitioning": mode}}).results[0]
            for mode in ("auto", "off")}
    auto, off = runs["auto"], runs["off"]
    assert auto.served_function > 0 and off.served_function == 0  # "off": no function holds vgg16
    assert auto.slo_violations < off.slo_violations
    assert auto.function_usd > 0 and off.function_usd == 0
    assert auto.requests == off.requests == int(prepare(load_trace("wits"), 0, 300, 5.0).sum())
    assert auto.latency_hist.sum() == auto.served


def test_simulated_hybrid_unchanged_where_a_single_function_is_cheaper(config, vgg_catalog):
    cfg = _config(config, vgg_catalog, 10240, duration_s=300)
    a, b = (simulate(cfg, vgg_catalog, "wits", ["hybrid"], jobs=1,
                     policy_kwargs={"hybrid": {"function_partitioning": mode}}).results[0] for mode in ("auto", "off"))
    assert (a.total_usd, a.slo_violations, a.served_function) == (b.total_usd, b.slo_violations, b.served_function)
