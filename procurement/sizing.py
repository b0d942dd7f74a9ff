"""Sizing arithmetic every policy shares: a fixed model per query class, demand per model from
class arrivals, how one VM of a type serves a model, the cheapest function memory within an
SLO, the spill route and the order surplus VMs stop in. Pure functions of the catalog and
config (the baselines in controller/policies and procurement.hybrid both use them)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from controller.core import PolicyContext, PolicyError, Route
from controller.ledger import function_charge_usd

# Memory sizes a function may take (Lambda allows any MB from 128 to 10,240).
MEMORY_GRID_MB = (128, 256, 512, 768, 1024, 1536, 1769, 2048, 3008, 4096, 5120, 6144, 8192, 10240)


def fixed_models(ctx: PolicyContext) -> list[int]:
    """Each class's model: its configured `model`, else the cheapest-to-serve model meeting the
    floor (by VM cost per request at the class SLO)."""
    out = []
    for c in ctx.classes:
        if c.model:
            m = ctx.catalog.model(c.model)
            if m.top1_accuracy < c.min_accuracy - 1e-12:
                raise PolicyError(f"app {c.name!r}: model {c.model} has accuracy {m.top1_accuracy:.3f} "
                                  f"< its floor {c.min_accuracy}")
            out.append(m.index)
            continue
        best = None
        for m in ctx.catalog.models_meeting(c.min_accuracy):
            if c.variants is not None and m.name not in c.variants:
                continue  # another app's variant
            costs = [ctx.catalog.vm_cost_per_request_usd(m.name, t, c.slo_ms) for t in ctx.config.vms.instance_types]
            costs = [x[0] for x in costs if x]
            if costs and (best is None or min(costs) < best[0]):
                best = (min(costs), m.index)
        if best is None:
            raise PolicyError(f"app {c.name!r}: no model meets accuracy {c.min_accuracy} within {c.slo_ms:g} ms")
        out.append(best[1])
    return out


def demand_by_model(class_rows: np.ndarray, class_models: list[int], n_models: int) -> np.ndarray:
    """Per-second arrivals per model [seconds, models] from arrivals per class."""
    out = np.zeros((class_rows.shape[0], n_models))
    for c, j in enumerate(class_models):
        out[:, j] += class_rows[:, c]
    return out


def strictest_slo_ms(ctx: PolicyContext, class_models: list[int], model_idx: int) -> float:
    return min(c.slo_ms for c, j in zip(ctx.classes, class_models) if j == model_idx)


@dataclass(frozen=True)
class VmSizing:
    instance_type: str
    batch_size: int
    capacity_per_s: float  # one VM at full batches
    service_ms: float  # latency of a full batch


def vm_sizing(ctx: PolicyContext, model: str, instance_type: str, slo_ms: float,
              batching: bool, latency_share: float = 0.5) -> VmSizing | None:
    """How one VM of `instance_type` serves `model`: the largest batch whose latency uses at most
    `latency_share` of the SLO (the rest is for queueing), or batch 1 without batching."""
    prof = ctx.catalog.vm_profile(model, instance_type)
    if prof is None or prof.latency_at(1) > slo_ms:
        return None
    b = prof.max_batch_within(latency_share * slo_ms) if batching else 1
    b = b or 1
    return VmSizing(instance_type, b, prof.capacity_per_s(b), prof.latency_at(b))


def cheapest_vm_sizing(ctx: PolicyContext, model: str, slo_ms: float, batching: bool) -> VmSizing | None:
    best, best_cost = None, math.inf
    for t in ctx.config.vms.instance_types:
        s = vm_sizing(ctx, model, t, slo_ms, batching)
        if s is None:
            continue
        cost = ctx.catalog.instance_type(t).on_demand_usd_per_h / s.capacity_per_s
        if cost < best_cost:
            best, best_cost = s, cost
    return best


def cheapest_function_memory(ctx: PolicyContext, model: str, slo_ms: float) -> tuple[int, float] | None:
    """(memory_mb, $ per warm request) of the cheapest memory whose warm latency fits the SLO."""
    prof = ctx.catalog.function_profile(model)
    fp = ctx.config.functions
    if prof is None:
        return None
    best = None
    for mem in MEMORY_GRID_MB:
        if not fp.min_memory_mb <= mem <= fp.max_memory_mb:
            continue
        lat = prof.latency_ms(mem)
        if lat + fp.invoke_overhead_ms > slo_ms:
            continue
        cost = function_charge_usd(lat, mem, fp)
        if best is None or cost < best[1]:
            best = (mem, cost)
    return best


def spill_route(model: str, slo_ms: float, sizing: VmSizing | None, fn_latency_ms: float,
                batch_size: int | None = None) -> Route:
    """Send a request to a VM while its wait plus service fits the SLO, else to a function."""
    service = sizing.service_ms if sizing else 0.0
    budget = max(0.0, slo_ms - service)
    return Route(model, vm_batch_size=batch_size or (sizing.batch_size if sizing else 1),
                 max_vm_wait_ms=budget, spill=True)


def terminate_order(vms, now_s: float, minimum_s: float):
    """Surplus VMs to stop first: booting ones (they are not serving yet) and those that have
    already used their billing minimum, newest first among the rest."""
    def key(v):
        used_min = (now_s - v.launched_s) >= minimum_s
        return (v.state == "ready", not used_min, -v.launched_s)
    return sorted(vms, key=key)
