"""The references on the full traces: every policy's cost as a multiple of the offline optimum
(`oracle`, a MILP executed through the simulator) and of the LP floor (`lower-bound`), with the
MILP's and the LP's solve times, window, gap and status, and the variants each policy served.

python bench/references.py [--traces wits,berkeley] [--slos 100,300,1000] [--policies ...]
Writes the section "References: offline optimum and LP floor" of BENCHMARKS.md (and the CSV and
plots to out/bench/references/<trace>-<slo>/). The machine's 1-minute load average is recorded
before and after each run: solve times taken beside other work read slower than the hardware.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._report import ROOT, write_section  # noqa: E402
from controller.catalog import load_catalog  # noqa: E402
from controller.config import load_config  # noqa: E402
from controller.sim.report import markdown_table  # noqa: E402
from controller.sim.run import simulate  # noqa: E402

POLICIES = "vm-reactive,lambda-only,spock,mark,oracle,hybrid"
COLS = ["policy", "total_cost_usd", "vm_cost_usd", "function_cost_usd", "slo_violation_pct", "cost_x_oracle",
        "cost_x_lower_bound", "vm_share_pct", "cold_starts", "dropped", "variants"]

CHANGED = """What changed against the previous tables (the sections "Simulator: full <trace> trace at SLO
<slo> ms", written before issues 17 and 18 and since withdrawn; see `catalog-change`):
- every policy now picks among the same variants (those meeting the floor; `configs/default.yaml`
  no longer pins `model: inception` for the baselines and the old oracle while hybrid chose
  freely): the `variants` column says what each served;
- `vm-reactive` and `spock` batch (the largest batch within half the SLO) on the type cheapest per
  request instead of batch 1 on a fixed c5.xlarge; `mark` as before but on the cheapest variant;
- `oracle` is the MILP optimum over VM counts per type per window plus functions, executed
  through the simulator (was: a greedy clairvoyant plan on one type);
- `lower-bound` is the LP relaxation with per-second demand, queueing, boots and the billing
  minimum (was: every request at the best VM's full-batch price, 94-415x below every policy);
- the catalog is the physically real one (commit 74348f5 and after): dollar figures are not
  comparable with the older tables, the multiples are."""


def _loadavg() -> str:
    try:
        return open("/proc/loadavg").read().split()[0]
    except OSError:
        return "?"


def _catalog_rev() -> str:
    try:
        return subprocess.check_output(["git", "log", "-1", "--format=%h %s", "--", "configs/catalog"],
                                       cwd=ROOT, text=True).strip()[:100]
    except Exception:  # noqa: BLE001 - a figure without the revision is still a figure
        return "unknown"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", default="wits,berkeley")
    ap.add_argument("--slos", default="300")
    ap.add_argument("--policies", default=POLICIES)
    ap.add_argument("--config", default=os.path.join(ROOT, "configs", "default.yaml"))
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--section", default="references", help="BENCHMARKS.md section (one per set of SLOs run)")
    a = ap.parse_args()
    base = load_config(a.config)
    pols = a.policies.split(",")
    parts = [f"Catalog: `configs/catalog` at {_catalog_rev()}. App `{base.apps[0].name}` (accuracy floor "
             f"{base.apps[0].min_accuracy}), seed {base.simulator.seed}, policies run in parallel processes."]
    for trace in a.traces.split(","):
        for slo in (float(x) for x in a.slos.split(",")):
            cfg = base.with_slo_ms(slo)
            cat = load_catalog(cfg.catalog.dir)
            out = os.path.join(ROOT, "out", "bench", "references", f"{trace}-{slo:g}ms")
            before = _loadavg()
            rep = simulate(cfg, cat, trace, pols, out, jobs=a.jobs)
            n = rep.results[0].requests
            parts.append(f"### {trace}, SLO {slo:g} ms ({n:,} requests; load average {before} before, "
                         f"{_loadavg()} after)\n\n" + markdown_table(rep.table, COLS) + "\n\n"
                         + "\n".join(f"- {h}" for h in rep.lower_bound_how))
            print(f"{trace} {slo:g} ms: done", flush=True)
    parts.append(CHANGED)
    cmd = f"python bench/references.py --traces {a.traces} --slos {a.slos} --policies {a.policies}"
    title = "References: offline optimum and LP floor"
    if a.section != "references":
        cmd += f" --section {a.section}"
        title += f" (SLO {a.slos.replace(',', ', ')} ms)"
    write_section(a.section, title, "\n\n".join(parts), cmd)


if __name__ == "__main__":
    main()
