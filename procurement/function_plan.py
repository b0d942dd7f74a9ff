"""How a policy turns a function-tier mode into SetFunctionConfig records (INFless, issue 12).

Modes:
- "none": one request per invocation at the memory the policy chose (the classic tier);
- "uniform": one (memory, batch size, wait) configuration from the exact solver;
- "nonuniform": up to three configurations, each taking a band of the spill rate.
The solver (`procurement.function_configs.solve_for_model`) sees a sample of recent per-second
spill rates, so a bursty spill gets a bottom band for its steady part and bands for its tail.
"""
from __future__ import annotations

import numpy as np

from controller.core import SetFunctionConfig
from procurement.function_configs import solve_for_model

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
