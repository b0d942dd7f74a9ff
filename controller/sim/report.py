"""The simulator's report: a table per policy (plus the LP floor) printed, written as CSV, and
PNG plots (arrival rate vs VM capacity, cost over time, latency CDF).

Every policy's cost is shown as a multiple of both references: `cost_x_oracle` of the offline
optimum's simulated cost (`oracle`, when it ran) and `cost_x_lower_bound` of the LP floor
(controller/sim/lower_bound.py); `variants` names the variants each policy served."""
from __future__ import annotations

import csv
import os

import numpy as np

from controller.sim.results import HIST_BINS, RunResult, hist_upper_edge_ms

COLUMNS = ["policy", "total_cost_usd", "vm_cost_usd", "function_cost_usd", "cost_x_lower_bound",
           "cost_x_oracle", "slo_violation_pct", "p50_ms", "p95_ms", "p99_ms", "mean_accuracy_pct",
           "meets_floor_and_slo_pct", "vm_share_pct", "function_share_pct", "cold_starts", "dropped",
           "requests", "cost_per_million_usd", "variants", "sim_requests_per_s"]


def rows(results: list[RunResult], lower_bound_usd: float) -> list[dict]:
    out = [r.summary() for r in results]
    oracle = next((r.total_usd for r in results if r.policy == "oracle"), None)
    for row, r in zip(out, results):
        row["cost_x_lower_bound"] = round(r.total_usd / lower_bound_usd, 3) if lower_bound_usd > 0 else ""
        row["cost_x_oracle"] = round(r.total_usd / oracle, 3) if oracle else ""
    n = results[0].requests if results else 0
    out.append({"policy": "lower-bound", "total_cost_usd": round(lower_bound_usd, 4), "cost_x_lower_bound": 1.0,
                "cost_x_oracle": round(lower_bound_usd / oracle, 3) if oracle else "", "requests": n,
                "cost_per_million_usd": round(1e6 * lower_bound_usd / max(n, 1), 4)})
    return out


def format_table(table: list[dict]) -> str:
    cols = ["policy", "total_cost_usd", "vm_cost_usd", "function_cost_usd", "cost_x_lower_bound",
            "cost_x_oracle", "slo_violation_pct", "p50_ms", "p95_ms", "p99_ms", "mean_accuracy_pct",
            "vm_share_pct", "function_share_pct", "cold_starts", "dropped", "variants"]
    heads = ["policy", "cost $", "VM $", "fn $", "x bound", "x optimum", "viol %", "p50 ms", "p95 ms",
             "p99 ms", "acc %", "VM %", "fn %", "cold", "dropped", "variants"]
    cells = [[str(r.get(c, "")) for c in cols] for r in table]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(heads)]
    last = len(heads) - 1
    fmt = lambda row: "  ".join(v.rjust(w) if 0 < i < last else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths)))
    return "\n".join([fmt(heads), fmt(["-" * w for w in widths])] + [fmt(r) for r in cells])


def markdown_table(table: list[dict], cols: list[str] | None = None) -> str:
    cols = cols or ["policy", "total_cost_usd", "vm_cost_usd", "function_cost_usd", "cost_x_lower_bound",
                    "cost_x_oracle", "slo_violation_pct", "p50_ms", "p95_ms", "p99_ms", "mean_accuracy_pct",
                    "vm_share_pct", "function_share_pct", "cold_starts", "dropped", "variants", "sim_requests_per_s"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in table]
    return "\n".join(lines)


def write_csv(table: list[dict], path: str) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in table:
            w.writerow(r)


def write_plots(results: list[RunResult], out_dir: str, title: str) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    if not results:
        return paths
    b = results[0].bucket_s
    t_h = np.arange(len(results[0].series["arrivals"])) * b / 3600.0

    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(t_h, results[0].series["arrivals"] / b, color="black", lw=1.2, label="arrivals")
    for r in results:
        ax.plot(t_h, r.series["capacity_per_s"], lw=0.9, label=f"{r.policy} VM capacity")
    ax.set(xlabel="hours", ylabel="requests/s", title=f"{title}: arrival rate vs VM capacity")
    ax.set_yscale("symlog")
    ax.legend(fontsize=7, ncol=3)
    paths.append(_save(fig, out_dir, "capacity.png"))

    fig, ax = plt.subplots(figsize=(10, 4.5))
    for r in results:
        ax.plot(t_h, np.cumsum(r.series["vm_usd"] + r.series["function_usd"]), lw=1.0, label=r.policy)
    ax.set(xlabel="hours", ylabel="cumulative cost $", title=f"{title}: cost over time")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    paths.append(_save(fig, out_dir, "cost.png"))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    edges = hist_upper_edge_ms(np.arange(HIST_BINS))
    for r in results:
        total = r.latency_hist.sum()
        if total:
            ax.plot(edges, np.cumsum(r.latency_hist) / r.requests, lw=1.0, label=r.policy)
    ax.set(xscale="log", xlabel="latency ms", ylabel="share of requests served within",
           title=f"{title}: latency CDF (dropped requests never arrive at 1)")
    ax.set_xlim(1, 1e5)
    ax.legend(fontsize=8)
    paths.append(_save(fig, out_dir, "latency_cdf.png"))
    return paths


def _save(fig, out_dir, name):
    path = os.path.join(out_dir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt
    plt.close(fig)
    return path
