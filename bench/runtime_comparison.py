"""Runtime comparison and the local profile / tune figures for BENCHMARKS.md.

Reads the cells `hybridserve profile` measured (configs/catalog/local/profile_cells.csv) and writes:
- section "runtime-comparison": mxnet vs onnxruntime p50 per model and batch size at each CPU
  share, and the speed-up (mxnet p50 / onnxruntime p50; > 1 = onnxruntime faster);
- section "profile-local": per model and runtime at one vCPU, p50 / p95 / throughput per batch,
  cold start and memory footprint;
- section "tune-report": runs `hybridserve tune` on the same profile (report in --report-dir)
  and lists its recommendations.
Measuring is `hybridserve profile`'s job; this script only reads and reports, so it is quick.

    python bench/runtime_comparison.py [--profile-dir configs/catalog/local] [--app image-classify]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench._report import write_section  # noqa: E402
from controller.profiler.executor import CELLS_FILE, read_cells  # noqa: E402

def noise_note(rows: list[dict]) -> str:
    """How quiet the machine was while the cells were taken (each cell records its load average)."""
    loads = [float(r["load_avg_1m"]) for r in rows if r.get("load_avg_1m")]
    reps = sorted({int(r["repeats"]) for r in rows})
    if not loads:
        return f"{'/'.join(map(str, reps))} timed calls per cell; the cells record no load average."
    return (f"{'/'.join(map(str, reps))} timed calls per cell, on 2 cores at a 1-minute load average of "
            f"{min(loads):.2f} to {max(loads):.2f} while profiling (each cell records its own): a cell "
            "taken beside other work reads slower than the hardware.")


def speedup_table(rows: list[dict]) -> tuple[str, dict]:
    p50 = {(r["model"], r["runtime"], float(r["cpu_share"]), int(r["batch_size"])): float(r["p50_ms"]) for r in rows}
    keys = sorted({(m, s, b) for (m, rt, s, b) in p50})
    lines = ["| model | CPU share (MB) | batch | mxnet p50 ms | onnxruntime p50 ms | speed-up |", "|---|---|---|---|---|---|"]
    ups = defaultdict(list)
    for m, s, b in keys:
        a, o = p50.get((m, "mxnet", s, b)), p50.get((m, "onnxruntime", s, b))
        if a is None or o is None:
            continue
        ups[m].append(a / o)
        lines.append(f"| {m} | {s:g} ({round(s * 1769)}) | {b} | {a:.1f} | {o:.1f} | {a / o:.2f}x |")
    return "\n".join(lines), ups


def cold_start_table(rows: list[dict]) -> str:
    """Cold start (process start + import + load + first call) per model, runtime and share."""
    cold = {}
    for r in rows:
        cold[(r["model"], float(r["cpu_share"]), r["runtime"])] = float(r["cold_start_ms"])
    lines = ["| model | CPU share | mxnet cold start ms | onnxruntime cold start ms | ratio |", "|---|---|---|---|---|"]
    for m, s in sorted({(m, s) for m, s, _ in cold}):
        a, o = cold.get((m, s, "mxnet")), cold.get((m, s, "onnxruntime"))
        if a and o:
            lines.append(f"| {m} | {s:g} | {a:.0f} | {o:.0f} | {a / o:.1f}x |")
    return "\n".join(lines)


def profile_table(rows: list[dict], share: float = 1.0) -> str:
    lines = ["| model | runtime | batch | p50 ms | p95 ms | req/s | cold start ms (process+import+load+1st call) "
             "| RSS delta MB |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["model"], r["runtime"], int(r["batch_size"]))):
        if float(r["cpu_share"]) != share:
            continue
        lines.append(f"| {r['model']} | {r['runtime']} | {r['batch_size']} | {float(r['p50_ms']):.1f} | "
                     f"{float(r['p95_ms']):.1f} | {float(r['throughput_per_s']):.1f} | {float(r['cold_start_ms']):.0f} | "
                     f"{float(r['rss_delta_mb']):.0f} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile-dir", default="configs/catalog/local")
    ap.add_argument("--app", default="image-classify")
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--report-dir", default="docs/tuning-report")
    ap.add_argument("--rate-per-s", type=float, default=10.0)
    args = ap.parse_args()
    os.chdir(ROOT)
    rows = read_cells(os.path.join(args.profile_dir, CELLS_FILE))
    if not rows:
        print(f"no profile in {args.profile_dir}: run `hybridserve profile` first", file=sys.stderr)
        return 2
    hosts = ", ".join(sorted({r["host"] for r in rows}))
    methods = ", ".join(sorted({r["method"] for r in rows}))
    table, ups = speedup_table(rows)
    geo = "; ".join(f"{m} {_geomean(v):.2f}x (range {min(v):.2f}-{max(v):.2f})" for m, v in sorted(ups.items()))
    write_section("runtime-comparison", "Runtime comparison: mxnet vs onnxruntime (local profile)",
                  f"Speed-up = mxnet p50 / onnxruntime p50 on the same model, batch and CPU share "
                  f"(> 1: onnxruntime faster). Geometric mean per model: {geo}.\n\n{noise_note(rows)}\n\n{table}\n\n"
                  f"Cold start, the larger difference (mxnet's import dominates):\n\n{cold_start_table(rows)}\n")
    write_section("profile-local", "Local profile: latency, throughput, cold start, memory at 1 vCPU",
                  f"`hybridserve profile --models squeezenet,mobilenet,resnet18 --batch 1,2,4,8 --repeats 3` and "
                  f"`hybridserve profile --models resnet50,inception --batch 1,2,4 --cpu-shares 0.5,1,2 --repeats 3` "
                  f"({len(rows)} cells in `{args.profile_dir}/{CELLS_FILE}`, host {hosts}, CPU share by {methods}; "
                  f"all shares there, the 1-vCPU rows here). Catalog CSVs for the controller are in "
                  f"`{args.profile_dir}/`.\n\n{noise_note(rows)}\n\n{profile_table(rows)}\n")
    from controller.cli import main as cli
    tune_args = ["tune", "--app", args.app, "--config", args.config, "--profile-dir", args.profile_dir,
                 "--out", args.report_dir, "--rate-per-s", f"{args.rate_per_s:g}", "--patch"]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli(tune_args)
    if rc != 0:
        return rc
    out = buf.getvalue().strip()
    write_section("tune-report", f"Tune report: app {args.app} on the local profile",
                  f"`hybridserve {' '.join(tune_args)}`; full report with plots: "
                  f"[{args.report_dir}/README.md]({args.report_dir}/README.md).\n\n{noise_note(rows)}\n\n```\n{out}\n```\n")
    print(out)
    return 0


def _geomean(v):
    import math
    return math.exp(sum(math.log(x) for x in v) / len(v))


if __name__ == "__main__":
    sys.exit(main())
