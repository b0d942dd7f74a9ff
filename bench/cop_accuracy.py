"""COP accuracy: leave-one-model-out error of the operator-profile latency prediction against
measured whole-model latency on this machine, per model, batch size and CPU share.

For each model M: predict M's latency from the operator table *without* M's measurements
(operators only M contains are interpolated by FLOPs from the other models' operators; the
calibration factor is learnt on the other models only) and compare with M's measured median.

    python bench/cop_accuracy.py            # from the stored profile (configs/catalog/operator_profiles)
    python bench/cop_accuracy.py --profile  # re-measure first (~15-25 min on 2 shared cores)
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._report import write_section  # noqa: E402
from serving.cop.predictor import PROFILE_DIR, OpTable, load_graph  # noqa: E402

MODELS = ("squeezenet", "mobilenet", "resnet18", "resnet50", "inception")


def evaluate(table: OpTable, models, mode: str, calibrate: bool) -> dict:
    """{(model, batch, share): (predicted, measured)} held out one model at a time."""
    out = {}
    for m in models:
        g = load_graph(m, table.directory)
        for (mm, b, s), measured in sorted(table.measured.items()):
            if mm == m:
                out[(m, b, s)] = (table.predict_profiled_ms(g, b, s, mode, exclude=m, calibrate=calibrate), measured)
    return out


def mape(pairs) -> float:
    p = np.array([x[0] for x in pairs])
    y = np.array([x[1] for x in pairs])
    return float(np.mean(np.abs(p - y) / y) * 100.0) if len(pairs) else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", action="store_true", help="re-measure operators and models first")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batches", default="1,4,16")
    ap.add_argument("--shares", default="0.5,1,2")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--column", default="cpu_ms", choices=("latency_ms", "min_ms", "cpu_ms"),
                    help="the timing summary the per-point table and the goal are read on")
    ap.add_argument("--scope", default="global", choices=("cell", "global"), help="calibration scope")
    args = ap.parse_args(argv)
    models = args.models.split(",")
    if args.profile:
        subprocess.run([sys.executable, "-m", "serving.cop.profile", "run", "--models", args.models, "--batches",
                        args.batches, "--shares", args.shares, "--repeats", str(args.repeats)], check=True)
        subprocess.run([sys.executable, "-m", "serving.cop.predictor", *models], check=True)
    columns = {"latency_ms": "wall medians", "min_ms": "wall minima", "cpu_ms": "CPU time / share"}
    load = os.getloadavg()
    variants = {("serial", True, "cell"): "serial sum, calibrated per (batch, share)",
                ("serial", True, "global"): "serial sum, one calibration factor",
                ("serial", False, "cell"): "serial sum, uncalibrated",
                ("critical_path", True, "cell"): "critical path (INFless), calibrated per (batch, share)"}
    results = {}
    for c in columns:
        for (mode, cal, scope) in variants:
            results[(c, mode, cal, scope)] = evaluate(OpTable(PROFILE_DIR, c, scope), models, mode, cal)
    main_key = (args.column, "serial", True, args.scope)
    main_res = results[main_key]
    lines = ["Leave-one-model-out mean absolute percentage error of the predicted latency (COP) against "
             "the measured latency, per model over batch sizes x CPU shares, and overall. Operators and "
             "models are summarised the same way: the wall-clock median of repeats, their minimum, or "
             "(shares <= 1) the process's CPU time per run / share, which other processes on this shared "
             "machine do not disturb (share 2 keeps the wall median):", "",
             "| prediction | timings | " + " | ".join(models) + " | all |", "|---|---|" + "---|" * (len(models) + 1)]
    for (c, *k), r in results.items():
        per = [mape([v for (m, _, _), v in r.items() if m == mm]) for mm in models]
        lines.append(f"| {variants[tuple(k)]} | {columns[c]} | " + " | ".join(f"{x:.1f}%" for x in per)
                     + f" | **{mape(list(r.values())):.1f}%** |")
    lines += ["", f"Per point ({variants[main_key[1:]]}, {columns[args.column]}): predicted / measured ms, error:",
              "", "| model | batch | CPU share | predicted ms | measured ms | error |", "|---|---|---|---|---|---|"]
    for (m, b, s), (p, y) in sorted(main_res.items()):
        lines.append(f"| {m} | {b} | {s:g} | {p:.1f} | {y:.1f} | {100 * (p - y) / y:+.1f}% |")
    by_cell = {}
    for (m, b, s), v in main_res.items():
        by_cell.setdefault((b, s), []).append(v)
    lines += ["", "MAPE per (batch, share) of the default: " + ", ".join(
        f"b{b}/s{s:g}: {mape(v):.1f}%" for (b, s), v in sorted(by_cell.items()))]
    overall = mape(list(main_res.values()))
    best_key = min(results, key=lambda k: mape(list(results[k].values())))
    best = mape(list(results[best_key].values()))
    goal = "met" if overall <= 10 else "not met"
    lines += ["", f"Goal MAPE <= 10%: **{goal}** for the default ({overall:.1f}%); the best variant above is "
              f"{variants[best_key[1:]]} on {columns[best_key[0]]} ({best:.1f}%).", "",
              "How measured: `python -m serving.cop.profile run` (called by `--profile`) runs each distinct "
              "operator-by-shape alone as a one-operator mxnet symbol (the MKLDNN-fused operators the model "
              "executes: conv+BN+ReLU is one operator) and each whole model as served (hybridized gluon), in a "
              "worker process per CPU share under a cgroup v1 CPU quota (share x 100 ms per 100 ms period) "
              "with OMP_NUM_THREADS = max(1, round(share)). Each figure (wall and CPU) is the median of up to "
              f"{args.repeats} timings; below one CPU a timing is the mean over >= 0.2 s of back-to-back runs "
              "(CFS throttling makes single short runs bimodal). The stored profile was made with "
              "`python -m serving.cop.profile run --repeats 7` (shares 0.5, 1, 2) and then "
              "`python -m serving.cop.profile run --shares 1,0.5 --repeats 5` (adds the CPU-time column), "
              "graphs cached with `python -m serving.cop.predictor`.",
              "",
              "Where it stands: the main error is interpolation of operator shapes only the held-out model has "
              "(resnet50's 1x1 bottleneck convolutions fused with the residual add are predicted ~50% slow from "
              "resnet18's 3x3 ones and others); with its own operators in the table (not held out) the "
              "resnet50 sum is within ~15% of measured. More profiled models (more shapes per class) is "
              "the direct fix.",
              "",
              f"Caveat: this machine has 2 cores shared with other engineers' profiling and tests "
              f"(load average at evaluation {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}); measured latencies "
              "drift by tens of percent between runs minutes apart, which bounds how close any prediction can "
              "come. Share 2 means both cores, which other processes also use."]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("cop-accuracy", "COP: operator-profile latency prediction, leave one model out", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
