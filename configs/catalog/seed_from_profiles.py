"""Build the AWS catalog CSVs in this folder from the measured AWS profiles in aws_profiles/ (copied from the shared reference data).

Run: python configs/catalog/seed_from_profiles.py [--profiles configs/catalog/aws_profiles]

Every output row carries a `source` column: `measured` when the cell is a published AWS
measurement, otherwise the rule that filled it. The fill rules, in order:

1. Function memory sizes that were not measured are filled by log-log interpolation in memory
   between the two nearest measured sizes of the same (model, batch). Above the largest
   measured size, the last segment's exponent is halved (Lambda adds vCPUs above 1,769 MB but a
   single inference uses them less and less) and no gain is assumed past 6 vCPUs (10,240 MB).
   Below the smallest measured size nothing is filled: a missing row in the source means the
   model did not fit or timed out there.
2. m5 and c5.4xlarge VM cells are derived from the nearest measured c5 size: m5 is the same
   vCPU count on a slower clock (3.1 vs 3.4 GHz, latency x1.10); c5.4xlarge runs twice the
   concurrent batches of c5.2xlarge at the same latency.
3. Concurrency is capped at the instance's vCPU count. InferAll's `max_concurrent_batches`
   implies more compute than the instance has (inception at 17 concurrent 22-ms batches on a
   4-vCPU c5.xlarge would be ~4.4 TFLOP/s against ~0.3 TFLOP/s of peak AVX-512 there); a
   CPU-bound inference keeps at least one core busy for its latency. The measured figure is kept
   in `measured_concurrent_batches`.
4. Models with no latency profile (resnet18, resnet50, mobilenet) are scaled from a measured
   model of the same family by the ratio of their measured warm Lambda execution times
   (aws_lambda_cold_start_ms.csv) or, where none is measured, by their FLOPs ratio.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))

FUNCTION_MEMORY_GRID_MB = [128, 256, 512, 1024, 1536, 2048, 3008, 4096, 6144, 8192, 10240]
BATCH_GRID = [1, 2, 4, 8, 16, 32, 64, 128, 256]
C5_MEMORY_TO_TYPE = {4096: "c5.large", 8192: "c5.xlarge", 16384: "c5.2xlarge"}

# (name, vcpu, memory_mb, on-demand $/h, spot $/h, boot mean s, boot std s). us-east-1 Linux
# on-demand prices; spot at a typical ~38% of on-demand. Boot = request to a Ray worker that
# serves: EC2 pending + OS boot + container pull + model load, ~90 s in MArk's and Spock's
# measurements, longer for larger images on small types.
INSTANCE_TYPES = [
    ("c5.large", 2, 4096, 0.085, 0.0323, 100, 15),
    ("c5.xlarge", 4, 8192, 0.17, 0.0646, 95, 15),
    ("c5.2xlarge", 8, 16384, 0.34, 0.1292, 90, 15),
    ("c5.4xlarge", 16, 32768, 0.68, 0.2584, 90, 15),
    ("m5.large", 2, 8192, 0.096, 0.0365, 100, 15),
    ("m5.xlarge", 4, 16384, 0.192, 0.0730, 95, 15),
    ("m5.2xlarge", 8, 32768, 0.384, 0.1459, 90, 15),
    ("m5.4xlarge", 16, 65536, 0.768, 0.2918, 90, 15),
    # The embedded default's "VMs" are Ray worker nodes on this machine, priced per vCPU
    # like c5 ($0.0425 per vCPU-hour); their boot is an emulated delay plus the Ray join.
    ("local.small", 1, 2048, 0.0425, 0.0162, 20, 3),
    ("local.medium", 2, 4096, 0.085, 0.0323, 20, 3),
]
DERIVED_VM = {  # type -> (measured c5 type, latency factor, concurrency factor)
    "c5.4xlarge": ("c5.2xlarge", 1.0, 2.0),
    "m5.large": ("c5.large", 1.10, 1.0),
    "m5.xlarge": ("c5.xlarge", 1.10, 1.0),
    "m5.2xlarge": ("c5.2xlarge", 1.10, 1.0),
    "m5.4xlarge": ("c5.2xlarge", 1.10, 2.0),
    # Until `hybridserve profile` has measured this machine, local types borrow c5.large's
    # per-vCPU figures.
    "local.small": ("c5.large", 1.0, 0.5),
    "local.medium": ("c5.large", 1.0, 1.0),
}
# model -> (reference model, latency ratio, why). Accuracies for these come from the MXNet
# Gluon model zoo (resnet18_v1, resnet50_v1, mobilenet1.0).
SCALED_MODELS = {
    "resnet50": ("resnet200", 783 / 2632, "warm Lambda 783 ms vs resnet200 2632 ms"),
    "resnet18": ("resnet200", 386 / 2632, "warm Lambda 386 ms vs resnet200 2632 ms"),
    "mobilenet": ("squeezenet", 1.2, "FLOPs ratio mobilenet1.0 / squeezenet1.0"),
}
EXTRA_ACCURACY = {"resnet50": (77.4, 93.7), "resnet18": (70.9, 89.9), "mobilenet": (73.3, 91.3)}
# Parameters in MB (float32) and cold start extras for models the cold-start table lacks.
PARAM_MB = {"caffenet": 233, "squeezenet": 5, "vgg16": 528, "inception": 92, "resnet200": 248,
            "resnet18": 45, "resnet50": 98, "mobilenet": 17}
RUNTIME_BASE_MB = 180  # the mxnet runtime itself, measured as the import footprint


def _read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def fill_function_latency(measured):
    """measured: {(model, batch): {memory_mb: latency_ms}} -> rows with the memory grid."""
    rows = []
    for (model, batch), by_mem in sorted(measured.items()):
        mems = sorted(by_mem)
        for mem in FUNCTION_MEMORY_GRID_MB:
            if mem < mems[0]:
                continue
            if mem in by_mem:
                rows.append((model, mem, batch, by_mem[mem], "measured"))
                continue
            lo = max(m for m in mems if m <= mem)
            hi_candidates = [m for m in mems if m > mem]
            if hi_candidates:
                hi = hi_candidates[0]
                frac = math.log(mem / lo) / math.log(hi / lo)
                lat = math.exp(math.log(by_mem[lo]) + frac * (math.log(by_mem[hi]) - math.log(by_mem[lo])))
                rows.append((model, mem, batch, round(lat, 1), f"log-interpolated {lo}-{hi} MB"))
                continue
            # Extrapolate above the largest measured size with half the last exponent.
            if len(mems) >= 2:
                a, b = mems[-2], mems[-1]
                alpha = math.log(by_mem[a] / by_mem[b]) / math.log(b / a)
            else:
                a, b, alpha = mems[-1], mems[-1], 0.5
            alpha = max(0.0, alpha / 2)
            eff_mem = min(mem, 10240)
            lat = by_mem[b] * (b / eff_mem) ** alpha
            rows.append((model, mem, batch, round(lat, 1), f"extrapolated from {b} MB, exponent {alpha:.2f}"))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--profiles", default=os.path.join(HERE, "aws_profiles"))
    args = ap.parse_args()
    p = args.profiles

    acc = {r["model"]: (float(r["top1_accuracy_pct"]), float(r["top5_accuracy_pct"]))
           for r in _read(os.path.join(p, "model_accuracy.csv"))}
    acc.update(EXTRA_ACCURACY)
    cold = {r["model"]: (int(r["cold_execution_ms"]), int(r["warm_execution_ms"]))
            for r in _read(os.path.join(p, "aws_lambda_cold_start_ms.csv"))}

    fn = defaultdict(dict)
    for r in _read(os.path.join(p, "aws_lambda_latency_ms.csv")):
        if int(r["batch_size"]) in BATCH_GRID:
            fn[(r["model"], int(r["batch_size"]))][int(r["memory_mb"])] = float(r["latency_ms"])
    for model, (ref, ratio, _why) in SCALED_MODELS.items():
        for (m, b), by_mem in list(fn.items()):
            if m == ref:
                fn[(model, b)] = {mem: round(v * ratio, 1) for mem, v in by_mem.items()}
    fn_rows = fill_function_latency(fn)
    for i, (model, mem, b, lat, src) in enumerate(fn_rows):
        if model in SCALED_MODELS:
            ref, ratio, why = SCALED_MODELS[model]
            fn_rows[i] = (model, mem, b, lat, f"scaled from {ref} x{ratio:.3f} ({why})" + ("" if src == "measured" else f"; {src}"))

    vm = {}
    for r in _read(os.path.join(p, "aws_vm_latency_ms.csv")):
        b = int(r["batch_size"])
        if b not in BATCH_GRID:
            continue
        t = C5_MEMORY_TO_TYPE[int(r["vm_memory_mb"])]
        vm[(r["model"], t, b)] = (float(r["latency_ms"]), int(r["max_concurrent_batches"]), "measured")
    for model, (ref, ratio, why) in SCALED_MODELS.items():
        for (m, t, b), (lat, conc, _src) in list(vm.items()):
            if m == ref:
                # A faster model runs the same number of concurrent batches, each faster.
                vm[(model, t, b)] = (round(lat * ratio, 1), conc, f"scaled from {ref} x{ratio:.3f} ({why})")
    for t, (ref_t, lat_f, conc_f) in DERIVED_VM.items():
        for (m, rt, b), (lat, conc, _src) in list(vm.items()):
            if rt == ref_t and (_src == "measured" or m in SCALED_MODELS):
                vm[(m, t, b)] = (round(lat * lat_f, 1), max(1, int(conc * conc_f)),
                                 f"derived from {ref_t} (latency x{lat_f}, concurrency x{conc_f})")

    vcpus = {t[0]: t[1] for t in INSTANCE_TYPES}
    models = sorted(set(m for m, _ in fn) | set(m for m, _, _ in vm))
    with open(os.path.join(HERE, "models.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "top1_accuracy_pct", "top5_accuracy_pct", "param_mb", "memory_footprint_mb",
                    "cold_start_ms", "source"])
        for m in models:
            if m in cold:
                c_ms, src = cold[m][0] - cold[m][1], "measured cold - warm execution"
            elif m in SCALED_MODELS:
                ref, ratio, _ = SCALED_MODELS[m]
                ref_cold = cold.get(ref, (1000, 500))
                c_ms, src = round((ref_cold[0] - ref_cold[1]) * ratio), f"scaled from {ref}"
            else:  # vgg16: weights load time in proportion to size, from caffenet's 233 MB
                c_ms, src = round((cold["caffenet"][0] - cold["caffenet"][1]) * PARAM_MB[m] / PARAM_MB["caffenet"]), \
                    "scaled from caffenet by parameter size"
            w.writerow([m, acc[m][0], acc[m][1], PARAM_MB[m], RUNTIME_BASE_MB + 2 * PARAM_MB[m], c_ms, src])
    with open(os.path.join(HERE, "function_latency.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "memory_mb", "batch_size", "latency_ms", "source"])
        w.writerows(sorted(fn_rows))
    with open(os.path.join(HERE, "vm_latency.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "instance_type", "batch_size", "latency_ms", "max_concurrent_batches",
                    "measured_concurrent_batches", "source"])
        for (m, t, b), (lat, conc, src) in sorted(vm.items()):
            capped = min(conc, vcpus[t])
            w.writerow([m, t, b, lat, capped, conc, src + ("; concurrency capped at vCPUs" if capped < conc else "")])
    with open(os.path.join(HERE, "instance_types.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["instance_type", "vcpu", "memory_mb", "on_demand_usd_per_h", "spot_usd_per_h",
                    "boot_s_mean", "boot_s_std"])
        w.writerows(INSTANCE_TYPES)
    print(f"wrote catalog for {len(models)} models, {len(fn_rows)} function cells, {len(vm)} VM cells")


if __name__ == "__main__":
    main()
