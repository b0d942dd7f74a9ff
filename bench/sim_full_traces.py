"""The simulator's report on the full WITS and Berkeley traces, and its speed.

python bench/sim_full_traces.py [--traces wits,berkeley] [--slo-ms 300] [--policies ...]
Writes the tables and requests simulated per second per policy to BENCHMARKS.md, and the CSV
and plots to out/bench/<trace>-<slo>/.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._report import ROOT, write_section  # noqa: E402
from controller.catalog import load_catalog  # noqa: E402
from controller.config import load_config  # noqa: E402
from controller.policies.registry import policy_names  # noqa: E402
from controller.sim.report import markdown_table  # noqa: E402
from controller.sim.run import simulate  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", default="wits,berkeley")
    ap.add_argument("--slo-ms", type=float, default=300)
    ap.add_argument("--policies", default=",".join(p for p in ["vm-reactive", "lambda-only", "spock", "mark",
                                                                "oracle", "hybrid"] if p in policy_names()))
    ap.add_argument("--config", default=os.path.join(ROOT, "configs", "default.yaml"))
    a = ap.parse_args()
    cfg = load_config(a.config).with_slo_ms(a.slo_ms)
    cat = load_catalog(cfg.catalog.dir)
    pols = a.policies.split(",")
    for trace in a.traces.split(","):
        out = os.path.join(ROOT, "out", "bench", f"{trace}-{a.slo_ms:g}ms")
        rep = simulate(cfg, cat, trace, pols, out)
        n = rep.results[0].requests
        speed = "\n".join(f"- {r.policy}: {r.requests / r.wall_s:,.0f} requests/s ({r.wall_s:.1f} s wall)"
                          for r in rep.results)
        body = (f"Full `{trace}` trace, {n:,} requests, SLO {a.slo_ms:g} ms, app "
                f"`{cfg.apps[0].name}` (accuracy floor {cfg.apps[0].min_accuracy}), seed {cfg.simulator.seed}.\n\n"
                + markdown_table(rep.table) + "\n\n"
                + "\n".join(f"References: {h}" for h in rep.lower_bound_how)
                + f"\n\nSimulator speed (goal >= 250,000 requests/s per policy):\n{speed}\n\n"
                f"Plots: `out/bench/{trace}-{a.slo_ms:g}ms/` (capacity.png, cost.png, latency_cdf.png).")
        cmd = f"python bench/sim_full_traces.py --traces {trace} --slo-ms {a.slo_ms:g} --policies {a.policies}"
        write_section(f"sim-{trace}-{a.slo_ms:g}", f"Simulator: full {trace} trace at SLO {a.slo_ms:g} ms", body, cmd)
        print(f"{trace}: done ({n:,} requests)")


if __name__ == "__main__":
    main()
