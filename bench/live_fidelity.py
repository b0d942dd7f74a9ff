"""Fidelity: the same trace slice and config through the live system and through the simulator.

    .venv/bin/python bench/live_fidelity.py [--short] [--speedup 10] [--rate-scale 0.0075] [--duration-s 600]

Both sides model the same system: the same policy (`hybrid`), the same compressed WITS counts
(one count per wall second; simulator arrivals `even`, like the load generator), the same fleet
(the Ray head as a standing VM of `serving.head_instance_type`, billed from the start and never
terminated; at most one local.small VM on top, 10 s emulated boot) and the same catalog: the live
side runs first and the simulator plans with a copy of the daemon's own catalog (/status
control.catalog_dir), whose digits rows carry what this machine measured at start: the forward
pass plus the proxy and router time, and a real local function cold start. Reports SLO violation
%, cost and p95 side by side (goal: within 15 % of each other; for the violation percentage, near
0, the gap is in absolute percentage points, met at <= 1.5 pp, i.e. 15 % of 10 %). Writes the
`live-fidelity` section of BENCHMARKS.md. `--short`: a 240-s slice (24 wall seconds) for a quick run.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._report import write_section  # noqa: E402
from bench.live_common import add_slice_args, slice_args, BENCH_CONFIG, Daemon, load_note  # noqa: E402

HEAD_TYPE = "local.small"
CONFIG = BENCH_CONFIG.replace("control: {enabled: %(control)s, instance_types: [local.small], max_vms: 1, "
                              "prewarm_functions: false}",
                              "control: {enabled: true, instance_types: [local.small], max_vms: 1, "
                              "vm_boot_s: 10, prewarm_functions: false}\n"
                              f"  head_instance_type: {HEAD_TYPE}")
VIOLATION_GOAL_PP = 1.5
GOAL = 0.15


def simulate(counts, cfg_path: str, catalog_dir: str):
    """The simulator on the daemon's catalog, with the head as a standing VM of the same type."""
    from controller.catalog import Catalog
    from controller.config import AppConfig, StandingVmConfig, load_config
    from controller.sim.engine import Simulation
    from serving.control_loop import policy_config
    from serving.daemon import prepare
    from serving.live_catalog import read_latency_jitter_ms
    from serving.settings import serving_config

    cfg = load_config(cfg_path)
    settings = serving_config(cfg)
    apps, _ = prepare(cfg, settings)
    pcfg = policy_config(cfg, settings)
    sim_cfg = pcfg.simulator.model_copy(update={
        "arrivals": "even", "standing_vms": [StandingVmConfig(instance_type=settings.head_instance_type)],
        "prewarm_functions": settings.control.prewarm_functions, "warm_start": False,
        "vm_latency_jitter_ms": read_latency_jitter_ms(catalog_dir)})
    pcfg = pcfg.model_copy(update={"apps": [AppConfig(name=a.name, slo_ms=a.slo_ms, min_accuracy=a.min_accuracy)
                                            for a in apps], "simulator": sim_cfg})
    r = Simulation(pcfg, Catalog(catalog_dir), counts, "hybrid").run()
    n = max(r.requests, 1)
    return {"requests": r.requests, "slo_violation_pct": 100.0 * r.slo_violations / n, "p95_ms": r.percentile_ms(95),
            "total_cost_usd": r.total_usd, "vm_cost_usd": r.vm_usd, "function_cost_usd": r.function_usd,
            "function_share_pct": 100.0 * r.served_function / n, "cold_starts": r.cold_starts}


def gap(name: str, a: float, b: float) -> tuple[str, bool]:
    """(shown gap, met): percentage points for the violation %, else relative to the larger."""
    if name.startswith("SLO"):
        d = abs(a - b)
        return f"{d:.2f} pp", d <= VIOLATION_GOAL_PP
    if max(abs(a), abs(b)) == 0:
        return "0 %", True
    rel = abs(a - b) / max(abs(a), abs(b))
    return f"{100.0 * rel:.0f} %", rel <= GOAL


def _status(url: str, timeout_s: float = 180.0) -> dict:
    """The control loop's status, once it has ticked (the daemon answers ready a little before)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with urllib.request.urlopen(url + "/status", timeout=30) as r:
            control = json.loads(r.read()).get("control") or {}
        if "catalog_dir" in control or time.monotonic() > deadline:
            return control
        time.sleep(1.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_slice_args(ap)
    args = slice_args(ap)
    from controller.sim.trace import load_trace, prepare
    from serving.loadgen import run_load, schedule

    os.environ.setdefault("HYBRIDSERVE_CACHE", os.path.join(tempfile.gettempdir(), "hybridserve-test-cache"))
    counts = prepare(load_trace("wits"), args.start_s, args.duration_s, args.rate_scale, args.speedup)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        fh.write(CONFIG)
    catalog_dir = tempfile.mkdtemp(prefix="fidelity-catalog-")
    try:
        with Daemon(control=True, config_text=CONFIG) as d:
            shutil.copytree(_status(d.url)["catalog_dir"], catalog_dir, dirs_exist_ok=True)
            res = asyncio.run(run_load(d.url, "digits", schedule(counts), 200.0))
            st = _status(d.url)
        n = max(res.scheduled, 1)
        live = {"requests": res.scheduled, "slo_violation_pct": 100.0 * (n - res.slo_met) / n,
                "p95_ms": res.percentile_ms(95), "total_cost_usd": st["cost_usd"]["total"],
                "vm_cost_usd": st["cost_usd"]["vm"], "function_cost_usd": st["cost_usd"]["function"],
                "function_share_pct": 100.0 * res.backends.get("function", 0) / n, "cold_starts": res.cold_starts}
        print("live", live, "variants", dict(res.variants), "events", st.get("tick", {}).get("events"), flush=True)
        sim = simulate(counts, fh.name, catalog_dir)
        print("sim", sim, flush=True)
        with open(os.path.join(catalog_dir, "vm_latency.csv")) as f:
            vm_rows = [ln.split(",") for ln in f.read().splitlines()[1:]]
        with open(os.path.join(catalog_dir, "models.csv")) as f:
            model_rows = [ln.split(",") for ln in f.read().splitlines()[1:]]
        from serving.live_catalog import read_latency_jitter_ms
        jitter = read_latency_jitter_ms(catalog_dir)
    finally:
        os.unlink(fh.name)
        shutil.rmtree(catalog_dir, ignore_errors=True)

    service = {r[0]: r[3] for r in vm_rows if r[1] == HEAD_TYPE and r[2] == "1"}
    cold = {r[0]: r[5] for r in model_rows}
    rows = [("SLO violations (%)", sim["slo_violation_pct"], live["slo_violation_pct"]),
            ("p95 latency (ms)", sim["p95_ms"], live["p95_ms"]),
            ("cost (USD)", sim["total_cost_usd"], live["total_cost_usd"])]
    more = [("  VM cost (USD)", sim["vm_cost_usd"], live["vm_cost_usd"]),
            ("  function cost (USD)", sim["function_cost_usd"], live["function_cost_usd"]),
            ("  function share (%)", sim["function_share_pct"], live["function_share_pct"]),
            ("  function cold starts", sim["cold_starts"], live["cold_starts"])]
    lines = ["| measure | simulator | live | gap | within goal |", "|---|---|---|---|---|"]
    verdicts = []
    for name, a, b in rows:
        shown, met = gap(name, a, b)
        verdicts.append((name, met))
        lines.append(f"| {name} | {a:.6g} | {b:.6g} | {shown} | {'yes' if met else '**no**'} |")
    lines += [f"| {name} | {a:.6g} | {b:.6g} | {gap(name, a, b)[0]} | |" for name, a, b in more]
    missed = [name for name, met in verdicts if not met]
    body = "\n".join([
        f"WITS [{args.start_s}, {args.start_s + args.duration_s}) s, speedup x{args.speedup:g}, rate x{args.rate_scale:g} "
        f"({int(counts.sum()):,} requests over {len(counts)} wall seconds), app `digits` (SLO 200 ms, floor 0.85), "
        f"policy `hybrid`. Same fleet on both sides: the head as a standing {HEAD_TYPE} VM (billed from the start, "
        "never terminated, one ready VM per digits variant in the policy's view), at most one local.small VM "
        "(10 s boot) on top. Same catalog: the daemon's, copied while it ran; its digits rows as this machine "
        f"measured them at start: batch-1 service time through proxy and router on {HEAD_TYPE} "
        f"{json.dumps(service)} ms, function cold start (catalog `cold_start_ms`, the simulator adds "
        f"`container_init_ms` 800 ms) {json.dumps(cold)} ms; the start-up samples' spread around their median "
        f"({len(jitter)} samples): p95 +{np.percentile(jitter, 95) if jitter else 0:.1f} ms, "
        f"p99 +{np.percentile(jitter, 99) if jitter else 0:.1f} ms. Simulator arrivals `even`, like the load generator.",
        "", "Gap: relative to the larger of the two for p95 and cost; in absolute percentage points for the SLO "
        f"violation percentage (near 0 a ratio means nothing), met at <= {VIOLATION_GOAL_PP:g} pp.", "",
        *lines, "",
        f"Live: variants {json.dumps(dict(res.variants))}, errors {json.dumps(dict(res.errors))}, fleet events: "
        f"{'; '.join(e.split(' ', 1)[1] for e in st.get('tick', {}).get('events', [])[-6:]) or 'none'}.", "",
        ("Goal (within 15 %) met on every measure." if not missed else
         f"Goal NOT met on: {', '.join(missed)}. Why: see the notes below."), "",
        NOTES, "", load_note()])
    write_section("live-fidelity", "Live: simulator vs live system on the same slice", body)
    return 0


NOTES = (
    "What makes the two sides comparable (issue #11): (1) the head's standing replicas are a VM on both sides "
    "(`serving.head_instance_type` live, `simulator.standing_vms` in the simulator; billed from the start in the same "
    "ledger arithmetic, never terminated), so neither serves for free and the policy plans around the same capacity; "
    "(2) the simulator plans and serves with the daemon's own catalog, whose digits service time is the median time "
    "of one-sample requests through the HTTP proxy and router measured at start, and whose function cold start is a "
    "real local function's; (3) the spread of those start-up samples around their median is added to each "
    "VM-served request in the simulator (`simulator.vm_latency_jitter_ms`), so its p95 has a tail; (4) the "
    "simulator starts as the daemon does (`warm_start: false`: a quiet first second, ordinary boots) and keeps no "
    "warm pool (`prewarm_functions: false`, as the daemon's config). What still differs, and moves the figures "
    "when the goal is missed: (a) p95: the start-up samples are sent one at a time, so they hold no contention, "
    "while during the run requests overlap in the single proxy and router processes (CPU-bound Python, ~14 ms of CPU a "
    "request across proxy and router, ~110 req/s at most here: live-router-overhead) and with the load generator on the same 2 cores; the "
    "simulator adds that overhead to a batchable service time of 1 vCPU slots, so at 15 req/s it sees almost no "
    "queueing and its p95 stays near the start-up median plus spread (on a quiet machine the live p95 is ~1.5x "
    "the simulator's; on a loaded one the spread measured at start can exceed or fall short of the run's); "
    "(b) live latency follows the load of this shared machine *during* the run, the "
    "simulator's follows what was measured at start (a stall of other engineers' jobs mid-run shows only live); "
    "the router's own selector picks the live variants (the simulator's policy selector may pick another mix); "
    "and a live spill to a function pays the measured cold start (tens of seconds under load), which the simulator "
    "reproduces only if it spills the same requests.")


if __name__ == "__main__":
    sys.exit(main())
