"""How a policy turns a function-tier mode into SetFunctionConfig records (INFless, issue 12).

Modes:
- "none": one request per invocation at the memory the policy chose (the classic tier);
- "uniform": one (memory, batch size, wait) configuration from the exact solver;
- "nonuniform": up to three configurations, each taking a band of the spill rate.
The solver (`procurement.function_configs.solve_for_model`) sees a sample of recent per-second
spill rates, so a bursty spill gets a bottom band for its steady part and bands for its tail.

Partitioning (AMPS-Inf, issue 13) is one more way to serve a model on the function tier:
`partition_option` asks the partition planner for the least-cost chain within the SLO under the
platform's memory cap; `use_partitioned` takes it when it beats every single function under the
planner's own cost model (a plan of two or more partitions: the planner's search includes the
single function, so it splits only when that is cheaper or the only way), or when no single
function is feasible at all (e.g. the catalog's profile starts above the memory cap).
"""
from __future__ import annotations

import numpy as np

from controller.core import SetFunctionConfig
from controller.layer_graph import LayerGraph
from procurement.function_configs import solve_for_model
from procurement.partition_planner import CostModel, PartitionLimits, PartitionPlan, TransferModel, plan_partitions

MODES = ("none", "uniform", "nonuniform")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"function_batching must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def function_configs(ctx, model: str, rates_per_s: np.ndarray, slo_ms: float, mode: str,
                     memory_mb: int, warm_pool: int = 0) -> tuple[SetFunctionConfig, ...]:
    """The records for one model; falls back to the plain configuration when batching has
    nothing to work with (no spill yet, or no batched configuration fits the SLO)."""
    plain = (SetFunctionConfig(model, memory_mb, warm_pool),)
    rates = np.asarray(rates_per_s, dtype=float)
    if mode == "none" or rates.size == 0 or rates.max() <= 0:
        return plain
    plan = solve_for_model(ctx.catalog, model, ctx.config.functions, rates, slo_ms,
                           max_configs=1 if mode == "uniform" else 3)
    if plan is None or not plan.configs:
        return plain
    out = []
    for i, c in enumerate(plan.configs):
        out.append(SetFunctionConfig(model, int(c.memory_mb), warm_pool if i == 0 else 0, int(c.batch_size),
                                     float(c.wait_ms), float(c.rate_lo_per_s), float(c.rate_hi_per_s)))
    return tuple(out)


def partition_option(graph: LayerGraph | None, slo_ms: float, fp, max_partitions: int = 4) -> PartitionPlan | None:
    """The least expected-cost chain (1 to `max_partitions` functions, each within the
    platform's memory range) whose warm latency, one invoke overhead per hop included, fits
    `slo_ms`; None without a layer graph or a feasible plan. Planned warm: the simulator adds
    cold starts per hop (procurement.partition_planner.chain_cold_ms)."""
    if graph is None:
        return None
    limits = PartitionLimits(max_partitions=max_partitions, max_memory_mb=fp.max_memory_mb)
    cm = CostModel(fp=fp, transfer=TransferModel(invoke_overhead_ms=fp.invoke_overhead_ms), warm_ratio=1.0)
    return plan_partitions(graph, slo_ms, limits, cm)


def use_partitioned(plan: PartitionPlan | None, single_feasible: bool) -> bool:
    """Whether the chain is the way to serve the model (see the module docstring)."""
    return plan is not None and (plan.num_partitions > 1 or not single_feasible)


def partitioned_config(model: str, plan: PartitionPlan, warm_pool: int = 0) -> SetFunctionConfig:
    """The record deploying `plan`: `memory_mb` is its largest function's (what the cap checks)."""
    return SetFunctionConfig(model, max(p.memory_mb for p in plan.partitions), warm_pool, partition_plan=plan)
