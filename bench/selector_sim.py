"""Model selection in the simulator: the hybrid policy with each selector on WITS, three apps.

python bench/selector_sim.py [--trace wits] [--duration-s N] [--config configs/three-apps.yaml]
For each selector (the bandits and the fixed "most accurate" / "fastest" choices): the share of
requests served within both their accuracy floor and their SLO, cost, violations and the mean
accuracy served. Writes the `selector-sim` section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._report import ROOT, write_section  # noqa: E402
from controller.catalog import load_catalog  # noqa: E402
from controller.config import load_config  # noqa: E402
from controller.sim.engine import Simulation  # noqa: E402
from controller.trace import load_trace, prepare  # noqa: E402
from procurement.hybrid import FIXED_SELECTORS  # noqa: E402
from selector import SELECTORS  # noqa: E402


def _one(args):
    cfg, trace, duration_s, name = args
    cat = load_catalog(cfg.catalog.dir)
    counts = prepare(load_trace(trace), 0, duration_s)
    r = Simulation(cfg, cat, counts, "hybrid", policy_kwargs={"selector": name}).run()
    s = r.summary()
    return name, s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trace", default="wits")
    ap.add_argument("--duration-s", type=int)
    ap.add_argument("--config", default=os.path.join(ROOT, "configs", "three-apps.yaml"))
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    a = ap.parse_args()
    cfg = load_config(a.config)
    names = list(SELECTORS) + list(FIXED_SELECTORS)
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(max_workers=a.jobs) as pool:
        rows = list(pool.map(_one, [(cfg, a.trace, a.duration_s, n) for n in names]))
    apps = "; ".join(f"{x.name}: acc >= {x.min_accuracy:g} within {x.slo_ms:g} ms, share {x.share:g}" for x in cfg.apps)
    lines = ["| selector | meets floor and SLO % | cost $ | SLO violation % | mean accuracy % | p99 ms | function share % |",
             "|---|---|---|---|---|---|---|"]
    for name, s in rows:
        lines.append(f"| {name} | {s['meets_floor_and_slo_pct']} | {s['total_cost_usd']} | {s['slo_violation_pct']} | "
                     f"{s['mean_accuracy_pct']} | {s['p99_ms']} | {s['function_share_pct']} |")
    span = f"the first {a.duration_s:,} s of" if a.duration_s else "the full"
    body = (f"The `hybrid` policy (same procurement) with each selector on {span} `{a.trace}` trace, "
            f"{rows[0][1]['requests']:,} requests; apps: {apps}.\n\n" + "\n".join(lines) +
            "\n\n`most-accurate` and `fastest` are fixed choices per app (the most accurate variant meeting "
            "the floor; the variant with the lowest VM latency meeting it).")
    cmd = "python bench/selector_sim.py" + (f" --duration-s {a.duration_s}" if a.duration_s else "") + \
        (f" --trace {a.trace}" if a.trace != "wits" else "")
    write_section("selector-sim", "Selector in the simulator: meeting floor and SLO, and cost", body, cmd)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
