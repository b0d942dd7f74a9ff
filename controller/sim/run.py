"""Run several policies over one trace and build the report (the `simulate` command's body)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from controller.core import PolicyContext, PolicyError
from controller.policies.registry import make_policy
from controller.sim.engine import Simulation, query_classes
from controller.sim.lower_bound import lower_bound_usd
from controller.sim.report import format_table, rows, write_csv, write_plots
from controller.trace import load_trace, prepare


@dataclass
class SimReport:
    table: list[dict]
    results: list
    lower_bound_how: list[str]
    files: list[str]


def check_policies(names: list[str], config, catalog) -> None:
    """Fail fast, before any run, on an unknown policy or one that cannot serve this config."""
    ctx = PolicyContext(config, catalog, query_classes(config))
    for n in names:
        make_policy(n, ctx)


def _run_one(config, catalog, counts, name, kwargs, progress_queue=None):
    tick = None
    if progress_queue is not None:
        last = [0]

        def tick(s):
            progress_queue.put((name, s - last[0]))
            last[0] = s
    sim = Simulation(config, catalog, counts, name, policy_kwargs=kwargs)
    solve_s = None
    if getattr(sim.policy, "clairvoyant", False):  # time the offline solve apart from the run
        t0 = time.perf_counter()
        sim.policy.see_future(sim.counts, sim.class_p)
        solve_s = time.perf_counter() - t0
    res = sim.run(progress=tick)
    res.reference = reference_summary(sim.policy)
    for r in res.reference.values():
        r["solve_s"] = solve_s
    return res


def reference_summary(policy) -> dict:
    """What the offline optimum solved, per class (empty for other policies)."""
    out = {}
    sols = getattr(policy, "solutions", None)
    if not sols:
        return out
    for cls, plan in zip(policy.ctx.classes, sols):
        out[cls.name] = {"model": plan.model, "window_s": plan.window_s, "objective_usd": plan.objective_usd,
                         "dual_bound_usd": plan.dual_bound_usd, "gap": plan.gap, "status": plan.status,
                         "types": sorted({c.instance_type for c, n in zip(plan.choices, plan.counts.sum(axis=0)) if n})}
    return out


def simulate(config, catalog, trace: str, policies: list[str], out_dir: str | None = None,
             progress: bool = False, policy_kwargs: dict | None = None, jobs: int | None = None) -> SimReport:
    """Run each policy over the trace slice the config selects; policies run in parallel
    processes (one per core by default), each on identical arrivals."""
    sim = config.simulator
    counts = prepare(load_trace(trace), sim.start_s, sim.duration_s, sim.rate_scale, sim.speedup)
    if counts.sum() == 0:
        raise PolicyError(f"trace {trace!r}: the selected slice has no requests")
    check_policies(policies, config, catalog)
    kwargs = policy_kwargs or {}
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(policies)))
    if jobs == 1:
        results = [_run_one(config, catalog, counts, n, kwargs.get(n)) for n in policies]
    else:
        results = _run_parallel(config, catalog, counts, policies, kwargs, jobs, progress)
    ctx = PolicyContext(config, catalog, query_classes(config))
    shares = np.array([c.share for c in ctx.classes], dtype=float)
    t0 = time.perf_counter()
    lb, bounds = lower_bound_usd(ctx, [counts.astype(float) * p for p in shares / shares.sum()])
    lb_s = time.perf_counter() - t0
    how = [f"{b.name}: LP floor ${b.usd:.4f} ({b.status}, {lb_s:.1f} s for all classes); VM capacity: {b.vm}; "
           f"functions: {b.function}" for b in bounds]
    how += [f"{name}: optimum serves {r['model']} on {', '.join(r['types']) or 'functions only'}, "
            f"{r['window_s']} s windows, MILP ${r['objective_usd']:.4f} (dual bound ${r['dual_bound_usd']:.4f}, "
            f"gap {100 * r['gap']:.2f} %, {r['status']}, solved in {r['solve_s']:.1f} s)"
            for res in results for name, r in res.reference.items()]
    table = rows(results, lb)
    files = []
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, "report.csv")
        write_csv(table, path)
        files.append(path)
        files += write_plots(results, out_dir, os.path.basename(str(trace)).removesuffix(".csv"))
    return SimReport(table, results, how, files)


def _run_parallel(config, catalog, counts, policies, kwargs, jobs, progress):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    ctx = mp.get_context("fork")
    queue = ctx.Manager().Queue() if progress else None
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = [pool.submit(_run_one, config, catalog, counts, n, kwargs.get(n), queue) for n in policies]
        if progress:
            from tqdm import tqdm
            with tqdm(total=len(counts) * len(policies), unit="s", desc="simulating", mininterval=0.5) as bar:
                while not all(f.done() for f in futures):
                    try:
                        _name, step = queue.get(timeout=0.2)
                        bar.update(step)
                    except Exception:
                        pass
        return [f.result() for f in futures]


def print_report(rep: SimReport, header: str) -> str:
    lines = [header, format_table(rep.table), ""] + [f"references: {h}" for h in rep.lower_bound_how]
    if rep.files:
        lines.append("wrote " + ", ".join(rep.files))
    return "\n".join(lines)
