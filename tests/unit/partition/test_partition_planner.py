"""Partition planner: the exact label-setting search equals brute force, and plans keep limits."""
import math
import os

import numpy as np
import pytest

from controller.config import REPO_ROOT, FunctionPlatformConfig
from controller.layer_graph import LayerGraph, load_layer_graph
from procurement.partition_planner import (MB, CostModel, PartitionLimits, brute_force_plan, best_single_function,
                                           encoded_payload_bytes, estimate_partition, fits_payload, plan_partitions)

GRAPHS = os.path.join(REPO_ROOT, "configs", "catalog", "model_graphs")


def random_graph(rng: np.random.Generator, n: int, grid=(512, 1024, 2048, 3008)) -> LayerGraph:
    """A synthetic chain: some tensors above the 6 MB payload limit, weights of tens of MB."""
    base_ms = rng.uniform(5, 200, n)
    speed = {m: (1769 / min(m, 1769)) * rng.uniform(0.9, 1.1) for m in grid}
    return LayerGraph(
        model="synthetic", input_bytes=602112,
        param_bytes=tuple(int(x) for x in rng.uniform(0.1, 150, n) * MB),
        output_bytes=tuple(int(x) for x in rng.choice([0.5, 3.0, 8.0, 12.0], n) * MB),
        activation_bytes=tuple(int(x) for x in rng.uniform(1, 40, n) * MB),
        memory_grid_mb=tuple(grid),
        latency_ms=tuple(tuple(float(b * speed[m]) for m in grid) for b in base_ms),
        runtime_base_mb=230.0, cold_start_ms=800.0)


def check_limits(plan, graph, limits, cm, slo_ms):
    assert 1 <= plan.num_partitions <= limits.max_partitions
    assert plan.latency_ms <= slo_ms + 1e-6
    assert [p.start for p in plan.partitions][0] == 0 and plan.partitions[-1].end == graph.num_blocks
    for a, b in zip(plan.partitions, plan.partitions[1:]):
        assert a.end == b.start
    for p in plan.partitions:
        assert p.memory_mb <= limits.max_memory_mb and p.memory_mb >= p.footprint_mb
        assert limits.package_mb + p.weights_mb <= limits.deployment_limit_mb
        tmp_mb = (p.weights_mb if limits.weights_in_tmp else 0) + \
            (graph.output_bytes[p.start - 1] / MB if p.in_via_store else 0) + \
            (graph.output_bytes[p.end - 1] / MB if p.out_via_store else 0)
        assert tmp_mb <= limits.tmp_storage_limit_mb
        # the estimate the plan carries is the one the cost model gives for that partition
        again = estimate_partition(graph, p.start, p.end, p.memory_mb, limits, cm)
        assert again == p


@pytest.mark.parametrize("seed", range(12))
def test_label_setting_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    graph = random_graph(rng, n=int(rng.integers(3, 7)))
    limits = PartitionLimits(max_partitions=int(rng.integers(1, 4)), max_memory_mb=int(rng.choice([1024, 3008])),
                             deployment_limit_mb=float(rng.choice([250, 10240])), package_mb=120.0,
                             tmp_storage_limit_mb=float(rng.choice([20, 512])),
                             weights_in_tmp=bool(rng.integers(0, 2)))
    cm = CostModel(warm_ratio=float(rng.choice([1.0, 0.8])))
    slo_ms = float(rng.uniform(300, 3000))
    dp = plan_partitions(graph, slo_ms, limits, cm)
    bf = brute_force_plan(graph, slo_ms, limits, cm)
    assert (dp is None) == (bf is None)
    if dp is not None:
        assert dp.cost_usd == pytest.approx(bf.cost_usd, rel=1e-9)
        check_limits(dp, graph, limits, cm, slo_ms)


def test_infeasible_when_nothing_fits():
    graph = random_graph(np.random.default_rng(1), n=4)
    assert plan_partitions(graph, 1e6, PartitionLimits(max_memory_mb=256)) is None  # below the runtime


def test_tighter_slo_never_cheaper():
    graph = random_graph(np.random.default_rng(2), n=6)
    costs = [p.cost_usd for s in (400, 800, 1600, 6400)
             if (p := plan_partitions(graph, s, PartitionLimits(max_partitions=3))) is not None]
    assert costs and all(a >= b - 1e-15 for a, b in zip(costs, costs[1:]))


def test_payload_rule_matches_lambda_limit():
    # 4.5 MiB of float32 becomes ~6 MiB of base64 JSON: just over the limit.
    assert fits_payload(4 * MB, 6 * MB)
    assert not fits_payload(int(4.6 * MB), 6 * MB)
    assert encoded_payload_bytes(3) == 4 * math.ceil(131 / 3) + 1024


def test_store_hop_costs_requests_and_time():
    g = random_graph(np.random.default_rng(3), n=2)
    g = LayerGraph(**{**g.__dict__, "output_bytes": (12 * MB, 4000)})
    cm = CostModel()
    first = estimate_partition(g, 0, 1, 2048, PartitionLimits(), cm)
    second = estimate_partition(g, 1, 2, 2048, PartitionLimits(), cm)
    assert first.out_via_store and second.in_via_store
    gb_s = FunctionPlatformConfig().price_usd_per_gb_s * 2.0
    assert first.cost_usd == pytest.approx(first.billed_ms / 1000 * gb_s + 2e-7 + 0.005 / 1000)
    assert first.billed_ms > first.compute_ms  # the PUT is inside the function's billed time


@pytest.mark.parametrize("model", ["squeezenet", "resnet50", "vgg16"])
def test_catalog_graphs_load_and_one_partition_matches_catalog(model, catalog):
    g = load_layer_graph(GRAPHS, model, catalog.model(model).cold_start_ms)
    assert g.num_blocks >= 8 and all(b > 0 for b in g.output_bytes)
    whole_3008 = sum(row[g.memory_grid_mb.index(3008)] for row in g.latency_ms)
    assert whole_3008 == pytest.approx(catalog.function_profile(model).latency_ms(3008), rel=1e-3)
    plan = best_single_function(g, 10_000, PartitionLimits(max_memory_mb=10240))
    assert plan is not None and plan.num_partitions == 1
