"""Fidelity: the same trace slice and config through the simulator and through the live system.

    .venv/bin/python bench/live_fidelity.py [--speedup 10] [--rate-scale 0.0075] [--duration-s 600]

Both sides use the same policy (`hybrid`), the same catalog (the live catalog the daemon builds:
the digits variants measured on this machine at start, local.small VMs with a 10 s emulated
boot, at most one) and the same compressed WITS counts (one count per wall second). The
simulator runs `controller.sim.engine.Simulation` with that config; the live side starts
`hybridserve run` and replays the counts with the load generator. Reports SLO violation %,
cost and p95 side by side (goal: within 15 % of each other). Writes the `live-fidelity`
section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._report import write_section  # noqa: E402
from bench.live_common import add_slice_args, BENCH_CONFIG, Daemon, load_note  # noqa: E402

CONFIG = BENCH_CONFIG.replace("control: {enabled: %(control)s, instance_types: [local.small], max_vms: 1, "
                              "prewarm_functions: false}",
                              "control: {enabled: true, instance_types: [local.small], max_vms: 1, "
                              "vm_boot_s: 10, prewarm_functions: false}")


def simulate(counts, cfg_path: str):
    from controller.config import AppConfig, load_config
    from controller.sim.engine import Simulation
    from serving.control_loop import policy_config
    from serving.daemon import prepare
    from serving.live_catalog import build_live_catalog
    from serving.settings import serving_config

    cfg = load_config(cfg_path)
    settings = serving_config(cfg)
    apps, acc = prepare(cfg, settings)
    catalog = build_live_catalog(cfg.catalog.dir, tempfile.mkdtemp(prefix="fidelity-catalog-"), sorted(acc), acc,
                                 settings.control.instance_types, settings.control.vm_boot_s)
    pcfg = policy_config(cfg, settings)
    pcfg = pcfg.model_copy(update={"apps": [AppConfig(name=a.name, slo_ms=a.slo_ms, min_accuracy=a.min_accuracy)
                                            for a in apps],
                                   "simulator": pcfg.simulator.model_copy(update={"arrivals": "even"})})
    return Simulation(pcfg, catalog, counts, "hybrid").run().summary()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_slice_args(ap)
    args = ap.parse_args()
    from controller.sim.trace import load_trace, prepare
    from serving.loadgen import run_load, schedule

    os.environ.setdefault("HYBRIDSERVE_CACHE", os.path.join(tempfile.gettempdir(), "hybridserve-test-cache"))
    counts = prepare(load_trace("wits"), args.start_s, args.duration_s, args.rate_scale, args.speedup)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        fh.write(CONFIG)
    sim = simulate(counts, fh.name)
    print("sim", sim, flush=True)
    with Daemon(config_text=CONFIG) as d:
        res = asyncio.run(run_load(d.url, "digits", schedule(counts), 200.0))
        with urllib.request.urlopen(d.url + "/status", timeout=30) as r:
            st = json.loads(r.read())
    os.unlink(fh.name)
    n = max(res.scheduled, 1)
    live = {"slo_violation_pct": 100.0 * (n - res.slo_met) / n, "p95_ms": res.percentile_ms(95),
            "total_cost_usd": st["control"]["cost_usd"]["total"], "vm_cost_usd": st["control"]["cost_usd"]["vm"],
            "function_cost_usd": st["control"]["cost_usd"]["function"],
            "function_share_pct": 100.0 * res.backends.get("function", 0) / n}
    print("live", live, flush=True)

    def gap(a, b):
        return "n/a" if max(a, b) == 0 else f"{100.0 * abs(a - b) / max(abs(a), abs(b)):.0f} %"
    rows = [("SLO violations (%)", sim["slo_violation_pct"], live["slo_violation_pct"]),
            ("p95 latency (ms)", sim["p95_ms"], live["p95_ms"]),
            ("cost (USD)", sim["total_cost_usd"], live["total_cost_usd"]),
            ("  VM cost (USD)", sim["vm_cost_usd"], live["vm_cost_usd"]),
            ("  function cost (USD)", sim["function_cost_usd"], live["function_cost_usd"])]
    lines = ["| measure | simulator | live | gap |", "|---|---|---|---|"]
    lines += [f"| {name} | {a:.6g} | {b:.6g} | {gap(a, b)} |" for name, a, b in rows]
    body = "\n".join([
        f"WITS [{args.start_s}, {args.start_s + args.duration_s}) s, speedup x{args.speedup:g}, rate x{args.rate_scale:g} "
        f"({int(counts.sum()):,} requests over {len(counts)} wall seconds), app `digits` (SLO 200 ms, floor 0.85), "
        "policy `hybrid`, the daemon's live catalog (digits variants measured at start; local.small, 10 s boot, "
        "at most 1 VM); simulator arrivals `even` like the load generator.", "", *lines, "",
        "Where it stands and why (goal: within 15 %): the two sides do not model the same fleet. The live system "
        "keeps one standing replica per digits variant on the Ray head (outside the policy's view, not billed), "
        "so most requests are served there at no cost, and it spills to local functions only when that queue "
        "grows; the simulator serves only what the policy buys (VMs, functions). Live latency also carries the "
        "HTTP proxy and router hops and the shared machine's stalls (p95 of tens of ms vs the catalog's ~1-2 ms "
        "forward pass), and real function cold starts are seconds (mxnet import under the CPU quota) where the "
        "catalog says 50 ms. Closing the gap needs the head replicas modelled as a standing VM in the "
        "simulator (or min_replicas 0 live) and the measured proxy/router overhead and cold start in the "
        "live catalog.", "", load_note()])
    write_section("live-fidelity", "Live: simulator vs live system on the same slice", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
