"""Issue 19's goals table: hybrid against the offline optimum, vm-reactive and mark, per trace,
SLO and rate.

Goals per cell: (G1) hybrid <= 1.25x the offline optimum (`oracle`) at <= 1 % SLO violations;
(G2) >= 80 % fewer violations and >= 35 % lower cost than vm-reactive; (G3) cheaper than mark
at no more violations.

python bench/hybrid_goals.py run --traces wits,spikes --slos 100,300,1000 --rates 1,10 [--duration-s 3600]
python bench/hybrid_goals.py write     # the section `hybrid-goals` of BENCHMARKS.md from every cell run
Each cell is cached as JSON under out/bench/goals/ (several `run`s, in parallel or one after the
other, feed one `write`); a cell records its slice, wall time and the machine's load average.
Traces: wits, berkeley, or a synthetic shape (spikes, ramps, mixed: bench/burst_traces.py).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._report import ROOT, git_rev, write_section  # noqa: E402
from bench.hybrid_diagnosis import trace_counts  # noqa: E402
from controller.catalog import load_catalog  # noqa: E402
from controller.config import load_config  # noqa: E402
from controller.sim.engine import Simulation  # noqa: E402
from controller.trace import TraceError  # noqa: E402

POLICIES = ("oracle", "hybrid", "mark", "vm-reactive")
CACHE = os.path.join(ROOT, "out", "bench", "goals")
# The runs behind the committed table: every trace's first 3,600 s at x1 and 1,800 s at x10,
# and the full WITS (every SLO) and Berkeley (300 ms) traces at x1.
WRITTEN_BY = ("python bench/hybrid_goals.py run --rates 1 --duration-s 3600; "
              "python bench/hybrid_goals.py run --rates 10 --duration-s 1800; "
              "python bench/hybrid_goals.py run --traces wits --rates 1; "
              "python bench/hybrid_goals.py run --traces berkeley --slos 300 --rates 1; "
              "python bench/hybrid_goals.py write")


def cell_path(trace: str, slo: float, rate: float, duration_s: int | None) -> str:
    span = f"{duration_s}s" if duration_s else "full"
    return os.path.join(CACHE, f"{trace}-{slo:g}ms-x{rate:g}-{span}.json")


def run_cell(cfg_base, trace: str, slo: float, rate: float, duration_s: int | None) -> dict:
    cfg = cfg_base.with_slo_ms(slo)
    cat = load_catalog(cfg.catalog.dir)
    counts = trace_counts(trace, duration_s, rate)
    load0 = os.getloadavg()[0]
    out = {"trace": trace, "slo_ms": slo, "rate": rate, "duration_s": duration_s or len(counts),
           "full": duration_s is None, "requests": int(counts.sum()), "rev": git_rev(), "policies": {}}
    for name in POLICIES:
        t0 = time.perf_counter()
        r = Simulation(cfg, cat, counts, name).run()
        out["policies"][name] = {"usd": r.total_usd, "vm_usd": r.vm_usd, "fn_usd": r.function_usd,
                                 "viol_pct": 100.0 * r.slo_violations / max(r.requests, 1),
                                 "variants": r.variants(), "wall_s": time.perf_counter() - t0}
    out["load_before"], out["load_after"] = load0, os.getloadavg()[0]
    return out


def goals(c: dict) -> dict:
    p = c["policies"]
    h, o, m, v = p["hybrid"], p["oracle"], p["mark"], p["vm-reactive"]
    x_opt = h["usd"] / o["usd"] if o["usd"] > 0 else float("inf")
    fewer = 1.0 - h["viol_pct"] / v["viol_pct"] if v["viol_pct"] > 0 else (1.0 if h["viol_pct"] == 0 else -1.0)
    return {"x_opt": x_opt, "g1": x_opt <= 1.25 and h["viol_pct"] <= 1.0,
            "vr_cost": h["usd"] / v["usd"], "vr_fewer": fewer,
            "g2": fewer >= 0.8 and h["usd"] <= 0.65 * v["usd"],
            "mark_cost": h["usd"] / m["usd"], "g3": h["usd"] < m["usd"] and h["viol_pct"] <= m["viol_pct"]}


def _yn(ok: bool) -> str:
    return "met" if ok else "**no**"


def table(cells: list[dict]) -> str:
    rows = ["| trace | slice | SLO ms | rate | requests | oracle $ / viol % | hybrid $ / viol % | x optimum | G1 | "
            "vm-reactive $ / viol % | hybrid cost vs it / fewer viol | G2 | mark $ / viol % | hybrid cost vs mark | G3 | "
            "load avg |", "|" + "---|" * 16]
    order = {"wits": 0, "berkeley": 1, "spikes": 2, "ramps": 3, "mixed": 4}
    for c in sorted(cells, key=lambda c: (not c["full"], order.get(c["trace"], 9), c["trace"], c["rate"], c["slo_ms"])):
        p, g = c["policies"], goals(c)
        span = "full" if c["full"] else f"first {c['duration_s']:,} s"
        f = lambda r: f"{r['usd']:.3f} / {r['viol_pct']:.3f}"  # noqa: E731
        rows.append(f"| {c['trace']} | {span} | {c['slo_ms']:g} | x{c['rate']:g} | {c['requests']:,} | {f(p['oracle'])} | "
                    f"{f(p['hybrid'])} | {g['x_opt']:.2f} | {_yn(g['g1'])} | {f(p['vm-reactive'])} | "
                    f"{g['vr_cost']:.2f}x / {100 * g['vr_fewer']:.0f} % | {_yn(g['g2'])} | {f(p['mark'])} | "
                    f"{g['mark_cost']:.2f}x | {_yn(g['g3'])} | {c['load_before']:.1f}-{c['load_after']:.1f} |")
    n = len(cells)
    met = {k: sum(goals(c)[k] for c in cells) for k in ("g1", "g2", "g3")}
    rows.append("")
    rows.append(f"Cells meeting each goal: G1 {met['g1']}/{n}, G2 {met['g2']}/{n}, G3 {met['g3']}/{n}.")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("run", "write"))
    ap.add_argument("--traces", default="wits,berkeley,spikes,ramps,mixed")
    ap.add_argument("--slos", default="100,300,1000")
    ap.add_argument("--rates", default="1,10")
    ap.add_argument("--duration-s", type=int, default=None, help="slice length (default: the full trace)")
    ap.add_argument("--note", default="", help="text put before the table by `write`")
    a = ap.parse_args(argv)
    if a.what == "write":
        cells = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(CACHE, "*.json")))]
        if not cells:
            print(f"hybrid_goals: no cells under {CACHE} (run `hybrid_goals.py run` first)", file=sys.stderr)
            return 2
        revs = sorted({c["rev"] for c in cells})
        body = ("Goals (issue 19): **G1** hybrid <= 1.25x the offline optimum at <= 1 % violations; **G2** >= 80 % "
                "fewer violations and >= 35 % lower cost than vm-reactive; **G3** cheaper than mark at no more "
                "violations. Policies run one after another in one process per cell (`run`); violations are late "
                f"or dropped requests; load average before-after each cell. Revisions: {', '.join(revs)}. "
                "Synthetic traces: bench/burst_traces.py, seed 0 (4 h).\n\n"
                + (a.note + "\n\n" if a.note else "") + table(cells))
        write_section("hybrid-goals", "Hybrid's goals: x optimum, vs vm-reactive, vs mark (every trace, SLO, rate)",
                      body, WRITTEN_BY)
        print(table(cells))
        return 0
    try:
        slos = [float(x) for x in a.slos.split(",")]
        rates = [float(x) for x in a.rates.split(",")]
    except ValueError:
        print(f"hybrid_goals: --slos and --rates take comma-separated numbers, got {a.slos!r}, {a.rates!r}",
              file=sys.stderr)
        return 2
    cfg = load_config(os.path.join(ROOT, "configs", "default.yaml"))
    os.makedirs(CACHE, exist_ok=True)
    for trace in a.traces.split(","):
        for rate in rates:
            for slo in slos:
                try:
                    c = run_cell(cfg, trace, slo, rate, a.duration_s)
                except TraceError as e:
                    print(f"hybrid_goals: {e}", file=sys.stderr)
                    return 2
                with open(cell_path(trace, slo, rate, a.duration_s), "w") as fh:
                    json.dump(c, fh, indent=1)
                g = goals(c)
                print(f"{trace} {slo:g} ms x{rate:g}: hybrid {c['policies']['hybrid']['usd']:.3f} "
                      f"({c['policies']['hybrid']['viol_pct']:.3f} %) x{g['x_opt']:.2f} opt, "
                      f"{g['vr_cost']:.2f}x vm-reactive, {g['mark_cost']:.2f}x mark; G1 {g['g1']} G2 {g['g2']} G3 {g['g3']}",
                      flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
