"""Control-tick time of the procurement core: VM planner (MILP) + reconcile + function tuner
+ warm pool + spill budgets, for 10 models x 20 instance types (issue 4 goal: p99 <= 20 ms).

The catalog has 8 models and 10 instance types; the rest are synthesised by scaling the
catalog's: extra models are copies of real ones 1.3x slower, extra types are copies of real ones
with latency x0.9 and price x1.08 (a newer generation). Demand per model follows a seeded
random walk, or (`--trace wits --rate-scale 100`, issue 19) the trace's 10-s mean rate times the
scale, split among the models in seeded shares; the fleet is a tiny in-memory one (launches listed next tick, ready after boot).
Only the core's calls are timed, not the fleet bookkeeping.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._report import write_section  # noqa: E402
from controller.catalog import FunctionProfile, VmProfile, load_catalog  # noqa: E402
from controller.config import REPO_ROOT, FunctionPlatformConfig  # noqa: E402
from controller.core import VmView  # noqa: E402
from procurement.function_tuner import (FunctionTuner, TunerSettings, burst_beyond_vm_per_s,  # noqa: E402
                                        warm_pool_size)
from procurement.spill import vm_wait_budget_ms  # noqa: E402
from procurement.vm_planner import ReconcileState, incumbent_counts, plan_vm_mix, reconcile  # noqa: E402


class ScaledCatalog:
    """The real catalog plus synthetic models and instance types (the planner's and tuner's
    lookups only)."""

    def __init__(self, base, num_models: int, num_types: int):
        self.base = base
        self.instance_types = dict(base.instance_types)
        self._type_src = {t: (t, 1.0) for t in base.instance_types}
        for t in list(base.instance_types)[:max(0, num_types - len(base.instance_types))]:
            it = base.instance_type(t)
            name = f"{t}.gen2"
            self.instance_types[name] = replace(it, name=name, on_demand_usd_per_h=it.on_demand_usd_per_h * 1.08,
                                                spot_usd_per_h=it.spot_usd_per_h * 1.08)
            self._type_src[name] = (t, 0.9)
        self._model_src = {m: (m, 1.0) for m in base.model_names}
        for m in base.model_names[:max(0, num_models - len(base.model_names))]:
            self._model_src[f"{m}-v2"] = (m, 1.3)
        self.model_names = list(self._model_src)

    def instance_type(self, name):
        return self.instance_types[name]

    def model(self, name):
        src, _ = self._model_src[name]
        return replace(self.base.model(src), name=name)

    def vm_profile(self, model, itype):
        (m, ms), (t, ts) = self._model_src[model], self._type_src[itype]
        p = self.base.vm_profile(m, t)
        return None if p is None else VmProfile(p.batch, p.latency_ms * ms * ts, p.concurrency)

    def function_profile(self, model):
        m, ms = self._model_src[model]
        p = self.base.function_profile(m)
        return FunctionProfile(p.memory_mb, p.latency_b1_ms * ms,
                               {b: (mem, lat * ms) for b, (mem, lat) in p.by_batch.items()})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=300)
    ap.add_argument("--models", type=int, default=10)
    ap.add_argument("--types", type=int, default=20)
    ap.add_argument("--slo-ms", type=float, default=300.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trace", default=None, help="drive the demand by a trace (wits, berkeley, a path)")
    ap.add_argument("--rate-scale", type=float, default=100.0, help="with --trace: its rate times this")
    ap.add_argument("--start-s", type=int, default=0, help="with --trace: the first trace second")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    cat = ScaledCatalog(load_catalog(os.path.join(REPO_ROOT, "configs", "catalog")), args.models, args.types)
    fp = FunctionPlatformConfig()
    models, types = cat.model_names, list(cat.instance_types)
    slo = {m: args.slo_ms for m in models}
    rng = np.random.default_rng(args.seed)
    tuner = FunctionTuner(cat, fp, TunerSettings())
    tstate, rstate = tuner.initial_state(), ReconcileState()
    base = {m: float(rng.uniform(20, 400)) for m in models}
    trace_rate = None
    if args.trace:
        from controller.trace import load_trace
        tr = load_trace(args.trace)[args.start_s:args.start_s + 10 * args.ticks].astype(float)
        trace_rate = tr[:len(tr) // 10 * 10].reshape(-1, 10).mean(axis=1) * args.rate_scale
        shares = dict(zip(models, rng.dirichlet(np.ones(len(models)))))
    dev = {m: 0.0 for m in models}
    rate = dict(base)
    fleet: dict[str, VmView] = {}
    fn_memory = {m: 3008 for m in models}
    option_cache: dict = {}  # the caller keeps it across ticks
    times_ms, parts = [], {"plan": [], "reconcile": [], "tune": []}
    n_vms, cost = [], []
    for tick in range(args.ticks):
        now = tick * 10.0
        for m in models:  # log-demand mean-reverting around its base, with rare 3x bursts
            dev[m] = 0.9 * dev[m] + float(rng.normal(0, 0.1))
            rate[m] = base[m] * float(np.exp(dev[m])) * (3.0 if rng.random() < 0.02 else 1.0)
            if trace_rate is not None:
                rate[m] = float(trace_rate[min(tick, len(trace_rate) - 1)]) * shares[m]
        views = [replace(v, state="ready") if now - v.launched_s >= 90 else v for v in fleet.values()]
        # measured function durations at the memory each model's function runs at (not timed)
        meas = {m: cat.function_profile(m).latency_ms(fn_memory[m]) * np.exp(rng.normal(0, 0.1, 5)) for m in models}
        t0 = time.perf_counter()
        mix = plan_vm_mix(rate, slo, cat, types, target_utilization=0.8, allow_spot=True, spot_max_share=0.5,
                          incumbent=incumbent_counts(views), launch_penalty_usd_per_h=0.01,
                          option_cache=option_cache)
        t1 = time.perf_counter()
        rec, rstate = reconcile(views, mix, now, rstate, scale_down_delay_s=300, billing_minimum_s=60)
        t2 = time.perf_counter()
        plan = {}
        for m in models:
            tstate = tuner.observe(tstate, m, fn_memory[m], meas[m])
            nxt, choice = tuner.step(tstate, m, slo[m], 0.01, rng)
            burst = burst_beyond_vm_per_s(rate[m] * 1.3, mix.usable_capacity_per_s.get(m, 0.0))
            pool = warm_pool_size(burst, choice.p95_ms)
            svc = max((e.option.latency_ms for e in mix.entries if e.option.model == m), default=0.0)
            plan[m] = (nxt or choice.memory_mb, pool, vm_wait_budget_ms(slo[m], svc))
        t3 = time.perf_counter()
        times_ms.append((t3 - t0) * 1000)
        parts["plan"].append((t1 - t0) * 1000)
        parts["reconcile"].append((t2 - t1) * 1000)
        parts["tune"].append((t3 - t2) * 1000)
        for m in models:
            fn_memory[m] = plan[m][0]
        for tm in rec.terminations:
            fleet.pop(tm.vm_id[2:])
        for ln in rec.launches:
            fleet[ln.request_id] = VmView("i-" + ln.request_id, ln.request_id, ln.instance_type, ln.model,
                                          "booting", now, ln.spot)
        n_vms.append(len(fleet))
        cost.append(mix.cost_usd_per_h)
    t = np.array(times_ms[5:])  # the first ticks warm caches (priors, imports)
    p50, p99 = np.percentile(t, [50, 99])
    rows = ["| part | p50 ms | p99 ms |", "|---|---|---|"]
    rows += [f"| {k} | {np.percentile(v[5:], 50):.2f} | {np.percentile(v[5:], 99):.2f} |" for k, v in parts.items()]
    rows += [f"| **whole tick** | **{p50:.2f}** | **{p99:.2f}** |"]
    verdict = "met" if p99 <= 20 else "NOT met"
    load = os.getloadavg()[0]
    demand = (f"demand: `{args.trace}` x{args.rate_scale:g} from second {args.start_s} "
              f"({np.mean(trace_rate[:args.ticks]):,.0f} req/s on average), " if trace_rate is not None
              else "demand: a seeded random walk per model, ")
    body = (demand + f"{args.models} models x {len(types)} instance types (on-demand and spot: {2 * len(types)} "
            f"options per model), SLO {args.slo_ms:.0f} ms, {args.ticks} ticks of 10 s "
            f"(first 5 dropped as warm-up). Fleet: {np.mean(n_vms):.0f} VMs on average, plan "
            f"${np.mean(cost):.2f}/h on average. Load average at the end: {load:.1f} on {os.cpu_count()} "
            f"cores (the machine is shared; times scale with it).\n\n" + "\n".join(rows) +
            f"\n\nGoal p99 <= 20 ms: **{verdict}** (p99 {p99:.2f} ms).\n")
    print(body)
    if not args.no_write:
        name = "planner-tick" + (f"-{os.path.basename(args.trace)}-x{args.rate_scale:g}" if args.trace else "")
        write_section(name, "Procurement control tick time (planner + reconcile + tuner)"
                      + (f" at {args.trace} x{args.rate_scale:g}" if args.trace else ""), body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
