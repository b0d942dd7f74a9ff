"""The ways to serve a query class that the two references (offline optimum and LP floor) choose
among: every model variant meeting the class's accuracy floor, on every allowed instance type or
on a function. Pure catalog arithmetic; no solver here.

Two views of one VM, because the references ask different questions:
- *planned* (the optimum's plan, which must run within the SLO in the simulator): a batch the
  VM planner would pick (`procurement.vm_planner.feasible_batch`: the largest capacity whose
  latency, doubled for the queue a dynamic batcher builds, fits the SLO) at the policy's target
  utilisation, launched one boot time (mean + 3 sd) ahead, grouped by batch size;
- *physical* (the floor, which no policy may beat): the largest capacity among batches whose own
  latency fits the SLO (a batch that takes longer than the SLO cannot serve its requests within
  it), at 100 % utilisation, after the shortest boot the simulator can draw.

Functions likewise: the planned $ per request is the cheapest SLO-feasible memory at batch 1
(what the optimum plans with; its execution may batch, which only lowers the bill); the floor's
is the least $ per request over every memory, every batch whose execution fits the SLO and the
partition planner's chain.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from controller.ledger import function_charge_usd
from procurement.sizing import cheapest_function_memory
from procurement.vm_planner import feasible_batch

# The simulator's boot time is max(5 s, normal(mean, sd)) x slow_boot_factor (FakeVmProvider).
MIN_BOOT_S = 5.0
BOOT_SD_LEAD = 3.0  # the optimum launches mean + 3 sd ahead: late in about 1 boot in 740


@dataclass(frozen=True)
class VmChoice:
    """One VM of `instance_type` serving `model`."""

    model: str
    instance_type: str
    batch_size: int
    capacity_per_s: float  # requests/s at `batch_size`, every slot busy
    usd_per_s: float
    lead_s: float  # launch this long before it must serve (planned) or the shortest boot (physical)


@dataclass(frozen=True)
class FunctionChoice:
    model: str
    memory_mb: int
    usd_per_request: float
    duration_s: float  # one invocation, invoke overhead included (for concurrency)
    init_usd: float  # one instance's cold start (init) charge


def candidate_models(ctx, cls) -> list[str]:
    """Every variant the class may be served by: its pinned `model`, else all meeting the floor."""
    if cls.model:
        m = ctx.catalog.model(cls.model)
        if m.top1_accuracy < cls.min_accuracy - 1e-12:
            from controller.core import PolicyError
            raise PolicyError(f"app {cls.name!r}: model {cls.model} has accuracy {m.top1_accuracy:.3f} "
                              f"< its floor {cls.min_accuracy}")
        return [cls.model]
    named = getattr(cls, "variants", None)  # an app that names its variants picks among those only
    return [m.name for m in ctx.catalog.models_meeting(cls.min_accuracy) if named is None or m.name in named]


def planned_vm_groups(ctx, model: str, slo_ms: float) -> list[list[VmChoice]]:
    """The ways to buy VMs for `model`, one group per batch size: the simulator's pool (like a
    live deployment) runs one batch size per model, so a plan mixing types holds for one batch.
    The batches are each type's planner batch (`feasible_batch`: the largest capacity whose
    latency, doubled for the queue, fits the SLO); a group holds every type on which its batch
    fits, at that batch. Smaller batches need no group of their own: on every type that fits a
    group's batch, capacity only grows up to that type's own planner batch."""
    profs = {t: p for t in ctx.config.vms.instance_types if (p := ctx.catalog.vm_profile(model, t)) is not None}
    batches = sorted({fb[0] for p in profs.values() if (fb := feasible_batch(p, slo_ms)) is not None})
    groups = []
    for b in batches:
        out = []
        for t, prof in profs.items():
            if 2.0 * prof.latency_at(b) > slo_ms:
                continue
            it = ctx.catalog.instance_type(t)
            lead = math.ceil(it.boot_s_mean + BOOT_SD_LEAD * it.boot_s_std)
            out.append(VmChoice(model, t, b, prof.capacity_per_s(b), it.on_demand_usd_per_h / 3600.0, float(lead)))
        groups.append(undominated(out))
    return groups


def physical_vm_choices(ctx, model: str, slo_ms: float) -> list[VmChoice]:
    out = []
    boot = MIN_BOOT_S * ctx.config.simulator.faults.slow_boot_factor
    for t in ctx.config.vms.instance_types:
        prof = ctx.catalog.vm_profile(model, t)
        if prof is None:
            continue
        ok = prof.batch[prof.latency_ms <= slo_ms]
        if not ok.size:
            continue
        caps = [prof.capacity_per_s(int(b)) for b in ok]
        i = int(np.argmax(caps))
        usd_per_s = ctx.catalog.instance_type(t).price_usd_per_h(ctx.config.vms.allow_spot) / 3600.0
        out.append(VmChoice(model, t, int(ok[i]), float(caps[i]), usd_per_s, boot))
    return out


def undominated(choices: list[VmChoice]) -> list[VmChoice]:
    """Drop a choice that another beats on every count: no dearer, no less capacity, no longer
    lead (one strictly; exact ties keep the first). Exact for the optimum: each VM of the
    dominated choice can be swapped for the other at no more cost and no less capacity."""
    keep = []
    for i, o in enumerate(choices):
        beaten = False
        for j, p in enumerate(choices):
            if i == j:
                continue
            weak = p.usd_per_s <= o.usd_per_s and p.capacity_per_s >= o.capacity_per_s and p.lead_s <= o.lead_s
            strict = (p.usd_per_s < o.usd_per_s or p.capacity_per_s > o.capacity_per_s or p.lead_s < o.lead_s
                      or j < i)
            if weak and strict:
                beaten = True
                break
        if not beaten:
            keep.append(o)
    return keep


def planned_function(ctx, model: str, slo_ms: float) -> FunctionChoice | None:
    """The cheapest memory whose warm call fits the SLO, one request per call."""
    fn = cheapest_function_memory(ctx, model, slo_ms)
    if fn is None:
        return None
    fp = ctx.config.functions
    mem, usd = fn
    dur_s = (ctx.catalog.function_profile(model).latency_ms(mem) + fp.invoke_overhead_ms) / 1000.0
    cold_ms = ctx.catalog.model(model).cold_start_ms + fp.container_init_ms
    init = function_charge_usd(cold_ms, mem, fp) if fp.bill_init else 0.0
    return FunctionChoice(model, int(mem), float(usd), dur_s, float(init))


def _threshold_memory(prof, batch: int, budget_ms: float, lo: float, hi: float) -> float | None:
    """The least memory in [lo, hi] whose latency at `batch` fits `budget_ms` (latency falls as
    memory grows), by bisection on the profile's interpolation."""
    if prof.latency_ms(hi, batch) > budget_ms:
        return None
    if prof.latency_ms(lo, batch) <= budget_ms:
        return lo
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if prof.latency_ms(mid, batch) <= budget_ms:
            hi = mid
        else:
            lo = mid
    return hi


def floor_function_usd(ctx, model: str, slo_ms: float) -> float:
    """Least $ per request any function configuration of `model` reaches within the SLO (inf
    when none fits). The profile interpolates latency log-linearly in memory between measured
    sizes, so $ = memory x latency is monotone between them: its minimum over all memory is at a
    measured size, a platform bound or the least memory that fits, all of which are tried."""
    prof = ctx.catalog.function_profile(model)
    fp = ctx.config.functions
    best = math.inf
    if prof is not None:
        budget = slo_ms - fp.invoke_overhead_ms
        batches = sorted(prof.by_batch)
        lo = max(float(prof.memory_mb[0]), float(fp.min_memory_mb))
        cands = {lo, float(fp.max_memory_mb)}
        for b in batches:
            mems = prof.by_batch[b][0]
            cands |= {float(m) for m in mems if lo <= m <= fp.max_memory_mb}
            t = _threshold_memory(prof, b, budget, lo, float(fp.max_memory_mb))
            if t is not None:
                cands.add(t)
        # Every batch size up to the largest profiled one, its latency interpolated between the
        # profiled sizes as the simulator's function pool does (never faster for a larger batch).
        k = np.arange(1, batches[-1] + 1)
        for m in sorted(cands):
            lat = np.maximum.accumulate(np.interp(k, batches, [prof.latency_ms(m, b) for b in batches]))
            ok = lat <= budget
            if ok.any():
                best = min(best, float(np.min(function_charge_usd(lat[ok], m, fp) / k[ok])))
    graph = ctx.catalog.layer_graph(model)
    if graph is not None:
        from procurement.function_plan import partition_option
        part = partition_option(graph, slo_ms, fp)
        if part is not None:
            best = min(best, float(part.cost_usd))
    return best
