"""The pure analyzer behind `hybridserve tune`: from latency profiles (the catalog, or a
profile of this machine in the same format) to costs and recommendations. No I/O, no clock.

Definitions, as AWS Lambda Power Tuning's analyzer has them (lambda/analyzer.js):
- cost:     the cheapest size per request (ties: the faster);
- speed:    the fastest size (ties: the cheaper);
- balanced: minimise  w x cost/max(cost) + (1 - w) x latency/max(latency)  with w in [0, 1]
            (w = 1 is cost, w = 0 is speed; normalised by the maxima over the candidates, as
            Power Tuning does; procurement.function_tuner normalises by the minima instead, so
            the two balanced choices may differ at the same weight).
hybridserve adds the SLO: candidates are the sizes whose latency plus the invoke overhead fits
the app's SLO; when none does, all sizes are candidates and the choice says it is infeasible.

Costs come from controller.ledger (GB-seconds in billing steps plus the per-request fee). One
invocation at batch b serves b requests, so a request costs charge(latency_b, M) / b:
squeezenet at 884 MB, batch 4, 400 ms = 0.8633 GB x 0.4 s x $0.0000166667 + $0.0000002
= $0.00000596 per call, $0.00000149 per request.

All-You-Can-Inference's cost-performance normalisation: relative cost of size M against 2 GB,
(M / 2 GB) x Latency(M) / Latency(2 GB); 1.0 at 2 GB, below 1 where M is the better buy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from controller.ledger import function_charge_usd

STRATEGIES = ("cost", "speed", "balanced")
REFERENCE_MEMORY_MB = 2048  # All-You-Can-Inference normalises against a 2 GB function


@dataclass(frozen=True)
class FunctionPoint:
    memory_mb: int
    batch: int
    latency_ms: float           # one invocation (the catalog's latency, p50 for a local profile)
    cost_per_request_usd: float
    normalised_cost: float      # (M / 2 GB) x L(M) / L(2 GB); nan where 2 GB cannot be read
    meets_slo: bool


@dataclass(frozen=True)
class Recommendation:
    strategy: str
    memory_mb: int
    batch: int
    latency_ms: float
    cost_per_request_usd: float
    meets_slo: bool             # False: no size meets the SLO, this is the best of the rest


@dataclass(frozen=True)
class InstanceChoice:
    instance_type: str
    batch: int                  # the batch size whose latency fits the SLO at least cost
    capacity_per_s: float       # one instance at full utilization
    count: int                  # instances covering the rate at the target utilization
    usd_per_h: float


@dataclass
class ModelTuning:
    model: str
    top1_accuracy: float
    points: list[FunctionPoint]
    recommendations: dict = field(default_factory=dict)   # batch -> {strategy: Recommendation}
    instances: list[InstanceChoice] = field(default_factory=list)  # cheapest first


@dataclass
class TuneResult:
    app: str
    slo_ms: float
    min_accuracy: float
    strategy: str
    weight: float
    rate_per_s: float
    batch: int                  # the batch size the headline recommendation is for
    models: list[ModelTuning]

    def chosen(self, model: ModelTuning) -> Recommendation | None:
        return model.recommendations.get(self.batch, {}).get(self.strategy)


def choose(memory_mb, latency_ms, cost_usd, meets_slo, strategy: str, weight: float = 0.5) -> int:
    """Index of the recommended size among parallel arrays (Power Tuning's rules, SLO first).
    Remaining ties go to the smaller memory size."""
    if strategy not in STRATEGIES:
        raise ValueError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"--weight must be in [0, 1], got {weight:g}")
    mem = np.asarray(memory_mb, dtype=float)
    lat = np.asarray(latency_ms, dtype=float)
    cost = np.asarray(cost_usd, dtype=float)
    ok = np.asarray(meets_slo, dtype=bool)
    if mem.size == 0:
        raise ValueError("no memory sizes to choose from")
    idx = np.flatnonzero(ok) if ok.any() else np.arange(mem.size)
    if strategy == "cost":
        keys = (mem[idx], lat[idx], cost[idx])  # np.lexsort: last key is primary
    elif strategy == "speed":
        keys = (mem[idx], cost[idx], lat[idx])
    else:
        value = weight * cost[idx] / cost[idx].max() + (1.0 - weight) * lat[idx] / lat[idx].max()
        keys = (mem[idx], value)
    return int(idx[np.lexsort(keys)[0]])


def function_points(profile, model_batches: dict, fp, slo_ms: float) -> list[FunctionPoint]:
    """Every measured (memory, batch) of one model's FunctionProfile, costed."""
    pts = []
    for b in sorted(model_batches):
        mems, lats = model_batches[b]
        try:
            ref = profile.latency_ms(REFERENCE_MEMORY_MB, b)
        except KeyError:
            ref = math.inf
        for m, lat in zip(mems, lats):
            cost = function_charge_usd(float(lat), float(m), fp) / b
            norm = (m / REFERENCE_MEMORY_MB) * lat / ref if math.isfinite(ref) and ref > 0 else math.nan
            pts.append(FunctionPoint(int(m), int(b), float(lat), float(cost), float(norm),
                                     float(lat) + fp.invoke_overhead_ms <= slo_ms))
    return pts


def recommend_all(points: list[FunctionPoint], weight: float) -> dict:
    """batch -> {strategy: Recommendation}, choosing among the memory sizes of that batch."""
    out = {}
    for b in sorted({p.batch for p in points}):
        ps = [p for p in points if p.batch == b]
        out[b] = {}
        for s in STRATEGIES:
            i = choose([p.memory_mb for p in ps], [p.latency_ms for p in ps],
                       [p.cost_per_request_usd for p in ps], [p.meets_slo for p in ps], s, weight)
            p = ps[i]
            out[b][s] = Recommendation(s, p.memory_mb, b, p.latency_ms, p.cost_per_request_usd, p.meets_slo)
    return out


def recommend_instances(catalog, model: str, rate_per_s: float, slo_ms: float, *,
                        target_utilization: float = 0.8, instance_types=None) -> list[InstanceChoice]:
    """Instance types that can serve `model` within the SLO, each with the count covering
    `rate_per_s` at `target_utilization`, cheapest $/h first (ties: fewer instances).
    E.g. 30 req/s on a type sustaining 16 req/s at 80%: ceil(30 / 12.8) = 3 instances."""
    out = []
    for t in instance_types or sorted(catalog.instance_types):
        prof = catalog.vm_profile(model, t)
        best = catalog.vm_cost_per_request_usd(model, t, slo_ms) if prof is not None else None
        if best is None:
            continue
        _, b = best
        cap = prof.capacity_per_s(b)
        count = max(1, math.ceil(rate_per_s / (cap * target_utilization) - 1e-9)) if rate_per_s > 0 else 0
        out.append(InstanceChoice(t, b, cap, count, count * catalog.instance_type(t).on_demand_usd_per_h))
    return sorted(out, key=lambda c: (c.usd_per_h, c.count, c.instance_type))


def tune_app(catalog, cfg, app_name: str, *, strategy: str = "cost", weight: float = 0.5,
             rate_per_s: float = 10.0, batch: int = 1, instance_types=None) -> TuneResult:
    """Costs and recommendations for every catalog model meeting the app's accuracy floor."""
    apps = {a.name: a for a in cfg.apps}
    if app_name not in apps:
        raise ValueError(f"--app: unknown app {app_name!r}; the config has: {', '.join(apps)}")
    if rate_per_s < 0:
        raise ValueError(f"--rate-per-s must be >= 0, got {rate_per_s:g}")
    choose([1], [1], [1], [True], strategy, weight)  # validates strategy and weight up front
    app = apps[app_name]
    models = []
    for m in catalog.models_meeting(app.min_accuracy):
        prof = catalog.function_profile(m.name)
        if prof is None:
            continue
        pts = function_points(prof, prof.by_batch, cfg.functions, app.slo_ms)
        mt = ModelTuning(m.name, m.top1_accuracy, pts, recommend_all(pts, weight))
        mt.instances = recommend_instances(catalog, m.name, rate_per_s, app.slo_ms,
                                           target_utilization=cfg.policy.target_utilization,
                                           instance_types=instance_types)
        models.append(mt)
    if not models:
        known = ", ".join(f"{m.name} {m.top1_accuracy:.3f}" for m in catalog.models) or "none"
        raise ValueError(f"no model with a function profile in {catalog.directory} meets {app_name}'s accuracy "
                         f"floor {app.min_accuracy:g} (models: {known})")
    if not any(batch in mt.recommendations for mt in models):
        raise ValueError(f"--batch {batch}: no model has a profile at that batch size")
    return TuneResult(app_name, app.slo_ms, app.min_accuracy, strategy, weight, rate_per_s, batch, models)
