"""Derive the AWS catalog in this folder from what this machine measured, by a documented rule.

Run from the project root:  .venv/bin/python configs/catalog/derive_catalog.py [--cross-check]

Input: `configs/catalog/measured/profile_cells.csv`, written by
  hybridserve profile --models squeezenet,mobilenet,resnet18,resnet50,inception,vgg16 \
      --runtimes onnxruntime,mxnet --batch 1,2,4,8,16,32 --cpu-shares 1,2 --repeats 7 \
      --out configs/catalog/measured
(per model, runtime and batch: the latency on 1 vCPU, one thread, and on 2 vCPUs, two threads,
with the load average of each cell). Output: models.csv, instance_types.csv, function_platform.csv,
vm_latency.csv and function_latency.csv here; every row's `source` says how it was made. The
local.* types are listed (the live daemon plans with them) but their rows are this machine's own
measurement, in configs/catalog/local (`hybridserve profile --out configs/catalog/local`).

The rule (docs/catalog.md gives it with the measured table):
1. Speed. A vCPU's FP32 ceiling is 2 x FMA units x lanes x clock / vCPUs per core
   (controller/compute.py). This machine's vCPU is a whole core (one thread per core) at
   HOST.clock_ghz; an EC2 or Lambda vCPU is a hyperthread, half a core when both are busy. A
   single-thread latency measured here becomes T x (ceiling here / ceiling there) on the target:
   the same fraction of peak, on a slower vCPU.
2. VM rows. One single-threaded batch per vCPU (a batch that uses k threads holds k vCPUs, and
   k = 1 serves the most images per second on a CPU): latency = the measured 1-vCPU latency x the
   speed ratio, concurrency = the type's vCPUs. Batch sizes are those measured (1-32); nothing is
   extrapolated past them.
3. Function rows. A function at M MB gets v = min(M / 1769, 6) vCPUs and serves one batch at a
   time with all of them. Below one vCPU its CFS quota stretches the 1-vCPU time by 1 / v. Above
   one, Amdahl's law with the serial fraction measured from 1 to 2 vCPUs at that batch
   (f = 2 T2 / T1 - 1) gives the speed-up 1 / (f + (1 - f) / v): multi-core scaling is measured,
   not assumed. A size below the process's measured peak memory at that batch gets no row.
4. Models not measured here (caffenet, resnet200) are scaled from a measured model of the same
   structure (resnet200 from resnet50, caffenet from vgg16): its latency fitted as a + c x batch,
   the per-batch part a (weights read once per batch: AlexNet's dense layers) scaled by the
   ratio of weights, the per-image part c by the ratio of FLOPs; the cold start's model part by
   the ratio of weights.
5. Cold start: import + load + first call - a warm batch-1 call, at one vCPU, times the speed
   ratio to the function platform (the rule of controller/profiler/catalog_files.py); the
   platform's own init is `functions.container_init_ms` in the config.
6. `../shared/profiles` (copied under aws_profiles/) is used only as a cross-check, where it can be
   physically true: batch-1 Lambda latency and cold starts (--cross-check prints the comparison).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from collections import defaultdict

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from controller.compute import CpuSpec, function_vcpus  # noqa: E402
from controller.profiler.catalog_files import cell_latency_ms, cold_start_ms_of, footprint_mb_of  # noqa: E402
from controller.profiler.host_cpu import BASE_HOST  # noqa: E402

CELLS = os.path.join(HERE, "measured", "profile_cells.csv")
RUNTIME = "mxnet"  # what serving runs (serving.runtime) and the Lambda image ships

# This machine: Intel Xeon (Sapphire Rapids class, AVX-512, 2 FMA units), one thread per core.
# The clock is the one its single-thread FP32 matrix multiply implies (bench/host_peak.py).
HOST = BASE_HOST
# Lambda x86 runs on Xeons of the c5/m5 generations (AVX-512); AWS publishes no clock: 3.0 GHz,
# a hyperthread per vCPU, like EC2.
LAMBDA = CpuSpec(clock_ghz=3.0, fp32_lanes=16, fma_units=2, vcpus_per_core=2)

# (name, vcpu, memory_mb, on-demand $/h, spot $/h, boot mean s, boot std s, cpu). us-east-1 Linux
# on-demand prices; spot at a typical ~38 % of on-demand. Boot = request to a Ray worker that
# serves (~90 s in MArk's and Spock's measurements). c5: Cascade Lake / Skylake at 3.4 GHz
# sustained all-core turbo; m5: Skylake / Cascade Lake at 3.1 GHz. The local types are Ray worker
# nodes on this machine, priced per vCPU like c5.
C5 = CpuSpec(clock_ghz=3.4)
M5 = CpuSpec(clock_ghz=3.1)
INSTANCE_TYPES = [
    ("c5.large", 2, 4096, 0.085, 0.0323, 100, 15, C5),
    ("c5.xlarge", 4, 8192, 0.17, 0.0646, 95, 15, C5),
    ("c5.2xlarge", 8, 16384, 0.34, 0.1292, 90, 15, C5),
    ("c5.4xlarge", 16, 32768, 0.68, 0.2584, 90, 15, C5),
    ("m5.large", 2, 8192, 0.096, 0.0365, 100, 15, M5),
    ("m5.xlarge", 4, 16384, 0.192, 0.0730, 95, 15, M5),
    ("m5.2xlarge", 8, 32768, 0.384, 0.1459, 90, 15, M5),
    ("m5.4xlarge", 16, 65536, 0.768, 0.2918, 90, 15, M5),
    ("local.small", 1, 2048, 0.0425, 0.0162, 20, 3, HOST),
    ("local.medium", 2, 4096, 0.085, 0.0323, 20, 3, HOST),
]
FUNCTION_MEMORY_MB = [128, 256, 512, 768, 1024, 1536, 1769, 2048, 3008, 3538, 4096, 5120, 6144, 8192, 10240]

# Top-1 / top-5 ImageNet accuracy (%): aws_profiles/model_accuracy.csv, and the MXNet Gluon model
# zoo for the models it lacks.
ZOO_ACCURACY = {"resnet50": (77.4, 93.7), "resnet18": (70.9, 89.9), "mobilenet": (73.3, 91.3)}
# Models measured by proxy: (measured model of the same structure, their published GFLOPs, why).
PROXY = {"resnet200": ("resnet50", 30.0, "a deeper ResNet v1 with bottleneck blocks"),
         "caffenet": ("vgg16", 1.45, "plain convolutions and large dense layers")}
# float32 weights, MiB: the parameter counts of the Gluon architectures (4 bytes each).
PARAM_MB = {"caffenet": 233, "squeezenet": 5, "vgg16": 528, "inception": 91, "resnet200": 248,
            "resnet18": 45, "resnet50": 98, "mobilenet": 16}


def _read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _write(name, header, rows):
    path = os.path.join(HERE, name)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


def graph_gflops() -> dict[str, float]:
    """FLOPs per image of each model with an operator graph (2 FLOPs per multiply-add)."""
    with open(os.path.join(HERE, "operator_profiles", "model_graphs.json")) as fh:
        graphs = json.load(fh)
    return {m: round(sum(n[4] for n in g["nodes"]) / 1e9, 2) for m, g in graphs.items()}


def amdahl_speedup(t1_ms: float, t2_ms: float, vcpus: float) -> float:
    """Speed-up on `vcpus` (>= 1) from the serial fraction that 1 -> 2 vCPUs measured."""
    f = min(1.0, max(0.0, 2.0 * t2_ms / t1_ms - 1.0))
    return 1.0 / (f + (1.0 - f) / vcpus)


def scale_latency(curve: dict, batch: int, which: int, k_flops: float, k_weights: float) -> float:
    """Rule 4: the reference's latency T(b) = a + c b fitted by least squares over its batches; the
    per-batch part a (reading the weights once per batch, dominant in large dense layers) scales
    with the weights, the per-image part c with the FLOPs."""
    b = np.array(sorted(curve), dtype=float)
    t = np.array([curve[int(x)][which] for x in b])
    c, a = np.polyfit(b, t, 1)
    a, c = max(a, 0.0), max(c, 0.0)
    return a * k_weights + c * batch * k_flops


def import_ms_of(rows: list[dict]) -> float:
    return float(np.median([float(r["import_ms"]) for r in rows if float(r["cpu_share"]) == 1.0]))


def function_latency_ms(t1_ms: float, t2_ms: float, vcpus: float, speed: float) -> float:
    """Rule 3: a function's latency on `vcpus` of the platform, from this machine's 1 and 2-vCPU times."""
    if vcpus <= 1.0:
        return t1_ms * speed / vcpus
    return t1_ms * speed / amdahl_speedup(t1_ms, t2_ms, vcpus)


def measured_curves(cells: list[dict], runtime: str):
    """model -> {batch: (t1_ms, t2_ms, peak_rss_mb, load_avg)} and model -> its 1-vCPU cells."""
    curves: dict[str, dict[int, list]] = defaultdict(dict)
    rows_of: dict[str, list] = defaultdict(list)
    for r in cells:
        if r["runtime"] != runtime:
            continue
        b, share = int(r["batch_size"]), float(r["cpu_share"])
        if share not in (1.0, 2.0):
            continue
        slot = curves[r["model"]].setdefault(b, [None, None, 0.0, 0.0])
        slot[0 if share == 1.0 else 1] = cell_latency_ms(r)
        slot[2] = max(slot[2], float(r["peak_rss_mb"]))
        slot[3] = max(slot[3], float(r.get("load_avg_1m") or 0.0))
        rows_of[r["model"]].append(r)
    return {m: {b: tuple(v) for b, v in sorted(c.items()) if v[0] and v[1]} for m, c in curves.items()}, rows_of


def derive(runtime: str = RUNTIME, cells_path: str = CELLS) -> dict:
    cells = _read(cells_path)
    curves, rows_of = measured_curves(cells, runtime)
    flops = graph_gflops()
    acc = {r["model"]: (float(r["top1_accuracy_pct"]), float(r["top5_accuracy_pct"]))
           for r in _read(os.path.join(HERE, "aws_profiles", "model_accuracy.csv"))}
    acc.update(ZOO_ACCURACY)
    host_src = f"measured here ({runtime}, {HOST.ceiling_gflops_per_vcpu:.0f} GFLOP/s-per-vCPU host)"
    lam_speed = HOST.ceiling_gflops_per_vcpu / LAMBDA.ceiling_gflops_per_vcpu

    models = {}  # model -> (curve, gflops, source prefix, cold ms, footprint mb)
    for m, curve in curves.items():
        if m not in flops or m not in acc:
            continue
        models[m] = (curve, flops[m], host_src, cold_start_ms_of(rows_of[m]) * lam_speed, footprint_mb_of(rows_of[m]))
    for m, (ref, gflops, why) in PROXY.items():
        if ref in models and m in acc:
            curve, g_ref, _, cold, foot = models[ref]
            kf, kw = gflops / g_ref, PARAM_MB[m] / PARAM_MB[ref]
            extra_mb = PARAM_MB[m] - PARAM_MB[ref]
            scaled = {b: (scale_latency(curve, b, 0, kf, kw), scale_latency(curve, b, 1, kf, kw), rss + extra_mb, load)
                      for b, (_t1, _t2, rss, load) in curve.items()}
            imp = import_ms_of(rows_of[ref]) * lam_speed
            models[m] = (scaled, gflops, f"{ref} scaled: per-image time x {kf:.3g} (FLOPs), per-batch time x "
                         f"{kw:.3g} (weights) ({why}); {host_src}", imp + (cold - imp) * kw, foot + extra_mb)

    model_rows, vm_rows, fn_rows = [], [], []
    for m, (curve, gflops, src, cold, foot) in sorted(models.items()):
        top1, top5 = acc[m]
        model_rows.append([m, top1, top5, PARAM_MB[m], int(math.ceil(foot)), round(cold), gflops,
                           f"cold start and footprint {src}"])
        for name, vcpu, *_, cpu in INSTANCE_TYPES:
            if name.startswith("local."):
                continue  # this machine's own rows are configs/catalog/local, measured (hybridserve profile)
            speed = HOST.ceiling_gflops_per_vcpu / cpu.ceiling_gflops_per_vcpu
            for b, (t1, _t2, _rss, _load) in curve.items():
                vm_rows.append([m, name, b, round(t1 * speed, 2), vcpu, vcpu,
                                f"1-vCPU latency x {speed:.3f} speed ratio, one batch per vCPU; {src}"])
        for mem in FUNCTION_MEMORY_MB:
            v = function_vcpus(mem)
            for b, (t1, t2, rss, _load) in curve.items():
                if mem < rss:
                    continue  # the process does not fit
                how = "1-vCPU time / share (CFS quota)" if v <= 1.0 else "Amdahl from 1 and 2 vCPUs"
                fn_rows.append([m, mem, b, round(function_latency_ms(t1, t2, v, lam_speed), 2),
                                f"{v:.2f} vCPUs: {how} x {lam_speed:.3f} speed ratio; {src}"])
    it_rows = [[n, v, mem, od, spot, bm, bs, cpu.clock_ghz, cpu.fp32_lanes, cpu.fma_units, cpu.vcpus_per_core,
                round(cpu.ceiling_gflops_per_vcpu, 1)] for n, v, mem, od, spot, bm, bs, cpu in INSTANCE_TYPES]
    return {"models": model_rows, "vm": vm_rows, "fn": fn_rows, "types": it_rows, "curves": curves,
            "flops": {m: v[1] for m, v in models.items()}, "lambda_speed": lam_speed}


HW_HEADER = ["clock_ghz", "fp32_lanes", "fma_units", "vcpus_per_core", "ceiling_gflops_per_vcpu"]


def write(d: dict) -> None:
    _write("models.csv", ["model", "top1_accuracy_pct", "top5_accuracy_pct", "param_mb", "memory_footprint_mb",
                          "cold_start_ms", "gflops_per_image", "source"], d["models"])
    _write("instance_types.csv", ["instance_type", "vcpu", "memory_mb", "on_demand_usd_per_h", "spot_usd_per_h",
                                  "boot_s_mean", "boot_s_std", *HW_HEADER], d["types"])
    _write("function_platform.csv", ["platform", *HW_HEADER],
           [["aws-lambda-x86", LAMBDA.clock_ghz, LAMBDA.fp32_lanes, LAMBDA.fma_units, LAMBDA.vcpus_per_core,
             round(LAMBDA.ceiling_gflops_per_vcpu, 1)]])
    _write("vm_latency.csv", ["model", "instance_type", "batch_size", "latency_ms", "max_concurrent_batches",
                              "measured_concurrent_batches", "source"], d["vm"])
    _write("function_latency.csv", ["model", "memory_mb", "batch_size", "latency_ms", "source"], d["fn"])


def cross_check(d: dict) -> list[str]:
    """Derived batch-1 Lambda latency and cold start beside the published figures that can be true."""
    fn = {(r[0], r[1], r[2]): r[3] for r in d["fn"]}
    cold = {r[0]: r[5] for r in d["models"]}
    out = ["| model | memory MB | published batch-1 ms | derived ms | derived / published |", "|---|---|---|---|---|"]
    for r in _read(os.path.join(HERE, "aws_profiles", "aws_lambda_latency_ms.csv")):
        key = (r["model"], int(r["memory_mb"]), 1)
        if int(r["batch_size"]) == 1 and key in fn:
            pub = float(r["latency_ms"])
            out.append(f"| {r['model']} | {r['memory_mb']} | {pub:.0f} | {fn[key]:.0f} | {fn[key] / pub:.2f} |")
    out += ["", "| model | published cold - warm ms | derived cold start ms |", "|---|---|---|"]
    for r in _read(os.path.join(HERE, "aws_profiles", "aws_lambda_cold_start_ms.csv")):
        if r["model"] in cold:
            out.append(f"| {r['model']} | {int(r['cold_execution_ms']) - int(r['warm_execution_ms'])} | {cold[r['model']]} |")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runtime", default=RUNTIME, choices=["mxnet", "onnxruntime"])
    ap.add_argument("--cells", default=CELLS)
    ap.add_argument("--cross-check", action="store_true", help="print the comparison with aws_profiles/")
    a = ap.parse_args()
    d = derive(a.runtime, a.cells)
    write(d)
    print(f"wrote {len(d['models'])} models, {len(d['vm'])} VM rows, {len(d['fn'])} function rows "
          f"from {a.cells} ({a.runtime})")
    if a.cross_check:
        print("\n".join(cross_check(d)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
