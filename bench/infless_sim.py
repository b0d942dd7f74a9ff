"""INFless on the function tier, in the simulator: `lambda-only` and `hybrid` with and without
function batching, uniform vs non-uniform configurations.

python bench/infless_sim.py [--traces wits,berkeley] [--slo-ms 300] [--duration-s N]
Writes the `infless-sim` section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._report import ROOT, write_section  # noqa: E402
from controller.catalog import load_catalog  # noqa: E402
from controller.config import load_config  # noqa: E402
from controller.sim.engine import Simulation  # noqa: E402
from controller.sim.trace import load_trace, prepare  # noqa: E402

MODES = ("none", "uniform", "nonuniform")


def _one(job):
    trace, slo_ms, duration_s, policy, mode = job
    cfg = load_config(os.path.join(ROOT, "configs", "default.yaml")).with_slo_ms(slo_ms)
    cat = load_catalog(cfg.catalog.dir)
    r = Simulation(cfg, cat, prepare(load_trace(trace), 0, duration_s), policy,
                   policy_kwargs={"function_batching": mode}).run()
    return job, r.summary()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", default="wits,berkeley")
    ap.add_argument("--slo-ms", type=float, default=300)
    ap.add_argument("--duration-s", type=int)
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    a = ap.parse_args()
    jobs = [(t, a.slo_ms, a.duration_s, p, m) for t in a.traces.split(",") for p in ("lambda-only", "hybrid")
            for m in MODES]
    with ProcessPoolExecutor(max_workers=a.jobs) as pool:
        results = list(pool.map(_one, jobs))
    lines = ["| trace | policy | function batching | cost $ | cost per request $ | SLO violation % | p50 ms | p99 ms | function share % | cold starts |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (trace, _slo, _d, policy, mode), s in results:
        per_req = s["total_cost_usd"] / max(s["requests"], 1)
        lines.append(f"| {trace} | {policy} | {mode} | {s['total_cost_usd']} | {per_req:.3g} | {s['slo_violation_pct']} | "
                     f"{s['p50_ms']} | {s['p99_ms']} | {s['function_share_pct']} | {s['cold_starts']} |")
    span = f"first {a.duration_s:,} s of each trace" if a.duration_s else "full traces"
    body = (f"{span.capitalize()}, SLO {a.slo_ms:g} ms, app `image-classify` (floor 0.70). `none`: one request per "
            "invocation (lambda-only at 3,008 MB; hybrid at the tuner's memory); `uniform`: one (memory, batch, "
            "wait) configuration from the exact solver; `nonuniform`: up to three, each for a band of the spill "
            "rate. The solver re-plans every 5 minutes from the last 10 minutes of per-second rates.\n\n"
            + "\n".join(lines) +
            "\n\nReading: batching cuts the function tier's cost per request by an order of magnitude here because "
            "the measured Lambda latency is nearly flat in batch size (inception 3,008 MB: 144 ms at batch 1, "
            "150 ms at 8), at the price of queueing up to the SLO's slack. Non-uniform sets equal the uniform one "
            "on this catalog: memory does not grow with batch size, so one configuration is optimal for every "
            "band (the solver's finding, not a restriction). The hybrid policy spills almost nothing at these "
            "rates, so its rows barely move.")
    cmd = f"python bench/infless_sim.py --traces {a.traces} --slo-ms {a.slo_ms:g}" + \
        (f" --duration-s {a.duration_s}" if a.duration_s else "")
    write_section("infless-sim", "INFless function batching in the simulator", body, cmd)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
