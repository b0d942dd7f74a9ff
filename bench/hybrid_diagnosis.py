"""Where hybrid's excess dollars and late requests go, against the offline optimum (issue 19).

For each trace: the `oracle` (the offline MILP optimum, executed through the simulator) and a
ladder of hybrid variants, each adding one change over the previous (so each change's effect is
measured on its own), then for the last rung a second-by-second comparison with the optimum in
10-s buckets, classified by what the load was doing (the 5-minute trend of the arrival rate):

- rising buckets: the forecast over the boot horizon and the reaction time;
- falling buckets: scale-down (too late: VMs paid above the optimum's fleet);
- steady buckets: the cover level and the VM mix;
plus the function tier's $ (spill, memory, warm pools) and the late requests, cold starts among
them. A plot per trace: arrival rate, hybrid's ready VM capacity, the optimum's.

python bench/hybrid_diagnosis.py [--traces wits,berkeley,spikes] [--duration-s 3600] [--slo-ms 300]
        [--rate-scale 1] [--no-write]
Writes the section `hybrid-diagnosis` of BENCHMARKS.md and docs/img/diagnosis-<trace>.png.
A trace name is wits, berkeley, or a synthetic shape (spikes, ramps, mixed: bench/burst_traces.py).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._report import ROOT, write_section  # noqa: E402
from bench.burst_traces import SHAPES, make_trace  # noqa: E402
from controller.catalog import load_catalog  # noqa: E402
from controller.config import load_config  # noqa: E402
from controller.sim.engine import Simulation  # noqa: E402
from controller.trace import TraceError, load_trace, prepare  # noqa: E402

BUCKET_S = 10
# Each rung adds one change to the one before (policy kwargs; see procurement/hybrid.py). The
# first is the policy as it was before issue 19; the last is today's default.
_BEFORE = {"vm_cover": "upper", "warm_pool_from": "forecast", "hybrid_scale_down_delay_s": 300,
           "make_before_break": False, "cover_whole_vms": False, "launch_penalty_frac": 0.0,
           "warm_pool_spike_factor": 0.0}
_STEPS = [("+ cost cover (vm_cover: the newsvendor quantile)", {"vm_cover": "cost"}),
          ("+ warm pool from the spill seen, held over the keep-alive", {"warm_pool_from": "history"}),
          ("+ scale-down window 60 s (the billing minimum)", {"hybrid_scale_down_delay_s": 60}),
          ("+ make before break", {"make_before_break": True}),
          ("+ whole-VM marginal rule", {"cover_whole_vms": True}),
          ("+ launch penalty 25 % of the new VM's price", {"launch_penalty_frac": 0.25}),
          ("+ warm pool for an unseen 5x flash crowd", {"warm_pool_spike_factor": 5.0})]
LADDER = [("before (issue 18 state)", dict(_BEFORE))]
for _label, _kw in _STEPS:
    LADDER.append((_label, {**LADDER[-1][1], **_kw}))


def trace_counts(name: str, duration_s: int | None, rate_scale: float) -> np.ndarray:
    if name in SHAPES:
        base = make_trace(name, 0)
    else:
        base = load_trace(name)
    return prepare(base, 0, duration_s, rate_scale)


def phases(arrivals_per_s: np.ndarray) -> np.ndarray:
    """Per bucket: +1 rising, -1 falling, 0 steady (5-min centred trend beyond +-10 %)."""
    k = max(1, 300 // BUCKET_S)
    pad = np.pad(arrivals_per_s, (k, k), mode="edge")
    before = np.array([pad[i:i + k].mean() for i in range(len(arrivals_per_s))])
    after = np.array([pad[i + k + 1:i + 2 * k + 1].mean() for i in range(len(arrivals_per_s))])
    trend = (after + 1.0) / (before + 1.0)
    return np.where(trend > 1.1, 1, np.where(trend < 1 / 1.1, -1, 0))


def attribution(h, o) -> list[str]:
    """Markdown rows: where hybrid's $ and late requests go, against the optimum `o`."""
    arr = h.series["arrivals"] / BUCKET_S
    ph = phases(arr)
    dvm = h.series["vm_usd"] - o.series["vm_usd"]
    dfn = h.series["function_usd"] - o.series["function_usd"]
    excess = h.total_usd - o.total_usd
    rows = ["| where | share of time | hybrid VM $ - optimum's | hybrid function $ - optimum's | hybrid late requests |",
            "|---|---|---|---|---|"]
    names = {1: "rising load (forecast over the boot horizon, reaction)", -1: "falling load (scale-down)",
             0: "steady load (cover level, VM mix)"}
    for p in (1, -1, 0):
        sel = ph == p
        rows.append(f"| {names[p]} | {100 * sel.mean():.0f} % | {dvm[sel].sum():+.4f} | {dfn[sel].sum():+.4f} | "
                    f"{int(h.series['violations'][sel].sum()):,} |")
    rows.append(f"| **total** (excess ${excess:+.4f}, {100 * excess / max(o.total_usd, 1e-12):+.0f} %) | 100 % | "
                f"{dvm.sum():+.4f} | {dfn.sum():+.4f} | {h.slo_violations:,} ({h.cold_starts:,} cold starts) |")
    cap_h, cap_o = h.series["capacity_per_s"], o.series["capacity_per_s"]
    over = np.maximum(0, cap_h - cap_o)
    under = np.maximum(0, cap_o - cap_h)
    rows.append("")
    rows.append(f"Ready VM capacity, hybrid vs optimum: mean {cap_h.mean():.0f} vs {cap_o.mean():.0f} req/s "
                f"(arrivals {arr.mean():.0f}); hybrid above the optimum's fleet in {100 * (over > 0).mean():.0f} % "
                f"of buckets (by {over[over > 0].mean() if (over > 0).any() else 0:.0f} req/s on average), below "
                f"in {100 * (under > 0).mean():.0f} %; served on functions: hybrid "
                f"{100 * h.served_function / max(h.requests, 1):.2f} %, optimum "
                f"{100 * o.served_function / max(o.requests, 1):.2f} %.")
    return rows


def plot(name: str, h, o, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t_h = np.arange(len(h.series["arrivals"])) * BUCKET_S / 3600.0
    fig, ax = plt.subplots(figsize=(11, 4))
    ax.plot(t_h, h.series["arrivals"] / BUCKET_S, color="0.6", lw=0.6, label="arrivals (10-s mean)")
    ax.plot(t_h, o.series["capacity_per_s"], color="tab:green", lw=1.0, label="optimum's ready VM capacity")
    ax.plot(t_h, h.series["capacity_per_s"], color="tab:red", lw=1.0, label="hybrid's ready VM capacity")
    ax.set(xlabel="hours", ylabel="requests/s", title=f"{name}: demand vs capacity (hybrid) vs the optimum's fleet")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", default="wits,berkeley,spikes")
    ap.add_argument("--duration-s", type=int, default=3600)
    ap.add_argument("--slo-ms", type=float, default=300)
    ap.add_argument("--rate-scale", type=float, default=1.0)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args(argv)
    cfg = load_config(os.path.join(ROOT, "configs", "default.yaml")).with_slo_ms(a.slo_ms)
    cat = load_catalog(cfg.catalog.dir)
    parts = [f"SLO {a.slo_ms:g} ms, rate x{a.rate_scale:g}, the first {a.duration_s:,} s of each trace "
             f"(slices: the full traces are in the goals section), seed {cfg.simulator.seed}, "
             f"10-s buckets. Each ladder rung adds one change to the rung above."]
    for name in a.traces.split(","):
        try:
            counts = trace_counts(name, a.duration_s, a.rate_scale)
        except TraceError as e:
            print(f"hybrid_diagnosis: {e}", file=sys.stderr)
            return 2
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        o = Simulation(cfg, cat, counts, "oracle").run(series_bucket_s=BUCKET_S)
        ladder = []
        for label, kw in LADDER:
            ladder.append((label, Simulation(cfg, cat, counts, "hybrid", policy_kwargs=kw).run(series_bucket_s=BUCKET_S)))
        rows = ["| policy | cost $ | VM $ | function $ | x optimum | violations % | cold starts | on functions % |",
                "|---|---|---|---|---|---|---|---|"]
        for label, r in [("oracle (offline optimum)", o)] + ladder:
            rows.append(f"| {label} | {r.total_usd:.4f} | {r.vm_usd:.4f} | {r.function_usd:.4f} | "
                        f"{r.total_usd / o.total_usd:.3f} | {100 * r.slo_violations / max(r.requests, 1):.3f} | "
                        f"{r.cold_starts:,} | {100 * r.served_function / max(r.requests, 1):.2f} |")
        img = os.path.join(ROOT, "docs", "img", f"diagnosis-{name}.png")
        plot(name, ladder[-1][1], o, img)
        parts.append(f"### {name} ({int(counts.sum()):,} requests; load average {load0:.1f} before, "
                     f"{os.getloadavg()[0]:.1f} after, {time.perf_counter() - t0:.0f} s)\n\n" + "\n".join(rows)
                     + "\n\nWhere the last rung's excess goes (10-s buckets against the optimum):\n\n"
                     + "\n".join(attribution(ladder[-1][1], o)) + f"\n\nPlot: `docs/img/diagnosis-{name}.png`.")
        print(parts[-1], flush=True)
    if not a.no_write:
        cmd = (f"python bench/hybrid_diagnosis.py --traces {a.traces} --duration-s {a.duration_s} "
               f"--slo-ms {a.slo_ms:g} --rate-scale {a.rate_scale:g}")
        write_section("hybrid-diagnosis", "Hybrid against the offline optimum: diagnosis and per-change effects",
                      "\n\n".join(parts), cmd)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
