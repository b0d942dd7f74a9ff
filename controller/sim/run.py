"""Run several policies over one trace and build the report (the `simulate` command's body)."""
from __future__ import annotations

import os
from dataclasses import dataclass


from controller.core import PolicyContext, PolicyError, make_policy
from controller.sim.engine import Simulation, query_classes
from controller.sim.lower_bound import lower_bound_usd
from controller.sim.report import format_table, rows, write_csv, write_plots
from controller.sim.trace import load_trace, prepare


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
    return Simulation(config, catalog, counts, name, policy_kwargs=kwargs).run(progress=tick)


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
    lb, how = lower_bound_usd(ctx, results[0].class_requests)
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
    lines = [header, format_table(rep.table), ""] + [f"lower bound: {h}" for h in rep.lower_bound_how]
    if rep.files:
        lines.append("wrote " + ", ".join(rep.files))
    return "\n".join(lines)
