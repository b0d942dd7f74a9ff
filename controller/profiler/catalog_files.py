"""Turn profile cells into a catalog folder: the same four CSVs, same columns, as
configs/catalog/, so `Catalog(<out_dir>)` loads a profile of this machine like the AWS one.

- function_latency.csv: per model x memory (= CPU share x 1769 MB) x batch, the latency on
  `catalog_runtime` (the runtime functions serve with; `cell_latency_ms`: the mean below one
  vCPU, the p50 from one up); source "measured on <host>".
- vm_latency.csv: the local instance types (`local.*` in the base catalog), from the 1-vCPU
  cells: one single-threaded batch per vCPU at a time (the seed's rule: a CPU-bound inference
  keeps one core busy), so local.medium (2 vCPUs) runs 2 concurrent batches, each slower than
  one alone by CONCURRENT_SLOWDOWN (the cores share the cache, memory and turbo budget).
- models.csv: accuracy columns copied from the base catalog (accuracy is not measured here);
  memory footprint = RSS delta at batch 1 (runtime + model, the largest over shares), cold start
  = import + load + first call - a warm batch-1 call at one vCPU: what a cold call adds beyond
  a warm one, the bare interpreter start being the platform's own init (container_init_ms).
- instance_types.csv: copied from the base catalog (prices are not measured either), the local
  types' clock and FP32 ceiling those of the machine profiled when `host` is given
  (controller/profiler/host_cpu.py: a profile of a faster machine describes that machine);
  function_platform.csv: the local types' CPU (local functions run on the same machine).
Models the base catalog does not know (no accuracy) get no rows.
"""
from __future__ import annotations

import csv
import math
import os
import shutil
from collections import defaultdict

from controller.compute import CpuSpec

# Two single-thread batches at once on this machine's two cores each take 1.16x the time of one
# alone (bench/catalog_compute.py --concurrency-check, quiet machine, 15 cells: one alone over two
# at once 0.82-0.91, median 0.86); a local type with more than one vCPU is planned with that.
CONCURRENT_SLOWDOWN = 1.16
DEFAULT_BASE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                            "configs", "catalog")


def _read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _write(path, header, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)


def _source(rows: list[dict]) -> str:
    hosts = sorted({r["host"] for r in rows})
    src = f"measured on {', '.join(hosts)}"
    if any(r["method"] == "threads" for r in rows):
        src += "; CPU share by thread count, times x1/share below 1 vCPU"
    return src


def cell_latency_ms(row: dict) -> float:
    """The latency a catalog row takes from a cell. Below one vCPU, the mean: the CFS quota makes
    calls lumpy (a short call often runs inside the period's unused quota, the next waits out the
    throttle), so the p50 reads the unthrottled speed while the mean is what back-to-back calls
    sustain (squeezenet at half a vCPU: p50 16.9 ms, mean 31.4). At one vCPU and more nothing
    throttles a call: the p50, which another process's interference on this shared machine moves
    least (vgg16 at 2 vCPUs, batch 8: one run's mean 1,554 ms against its p50 of ~800)."""
    return float(row["mean_ms"] if float(row["cpu_share"]) < 1.0 else row["p50_ms"])


def footprint_mb_of(rows: list[dict]) -> float:
    """A model's memory footprint from its cells: the largest RSS delta at batch 1 over CPU shares
    (what the runtime, the model and one batch add to a bare interpreter)."""
    b1 = [r for r in rows if int(r["batch_size"]) == 1] or rows
    return max(float(r["rss_delta_mb"]) for r in b1)


def cold_start_ms_of(rows: list[dict]) -> float:
    """What a cold call adds beyond a warm one, from a model's cells: import + load + first call - a
    warm batch-1 call, the median over its 1-vCPU cells (the bare interpreter start being the
    platform's own init, container_init_ms)."""
    b1 = [r for r in rows if int(r["batch_size"]) == 1] or rows
    ref = [r for r in b1 if float(r["cpu_share"]) == 1.0] or b1
    cold = [float(r["import_ms"]) + float(r["load_ms"]) + float(r["first_call_ms"]) - float(r["p50_ms"])
            for r in ref]
    cold = sorted(c for c in cold if math.isfinite(c))
    return max(0.0, cold[len(cold) // 2]) if cold else 0.0


def _on_host(row: dict, host: CpuSpec) -> dict:
    """An instance-type row with `host`'s CPU columns."""
    return {**row, "clock_ghz": host.clock_ghz, "fp32_lanes": host.fp32_lanes, "fma_units": host.fma_units,
            "vcpus_per_core": host.vcpus_per_core, "ceiling_gflops_per_vcpu": round(host.ceiling_gflops_per_vcpu, 1)}


def write_catalog_files(out_dir: str, cells: list[dict], *, base_catalog_dir: str | None = None,
                        catalog_runtime: str = "mxnet", host: CpuSpec | None = None) -> dict[str, int]:
    """Write the four catalog CSVs into out_dir from cell rows; returns rows written per file."""
    base = base_catalog_dir or DEFAULT_BASE
    base_models = {r["model"]: r for r in _read(os.path.join(base, "models.csv"))}
    base_types = _read(os.path.join(base, "instance_types.csv"))
    if host is not None:
        base_types = [_on_host(t, host) if t["instance_type"].startswith("local.") else t for t in base_types]
        _write(os.path.join(out_dir, "instance_types.csv"), list(base_types[0]), [list(t.values()) for t in base_types])
    elif os.path.abspath(base) != os.path.abspath(out_dir):
        shutil.copyfile(os.path.join(base, "instance_types.csv"), os.path.join(out_dir, "instance_types.csv"))
    mine = [r for r in cells if r["runtime"] == catalog_runtime and r["model"] in base_models]
    by_model = defaultdict(list)
    for r in mine:
        by_model[r["model"]].append(r)

    fn_rows, vm_rows, model_rows = [], [], []
    local_types = [(t["instance_type"], int(t["vcpu"])) for t in base_types if t["instance_type"].startswith("local.")]
    for model, rows in sorted(by_model.items()):
        src = _source(rows)
        for r in sorted(rows, key=lambda r: (int(r["memory_mb"]), int(r["batch_size"]))):
            fn_rows.append([model, int(r["memory_mb"]), int(r["batch_size"]), round(cell_latency_ms(r), 1), src])
        one_vcpu = {int(r["batch_size"]): r for r in rows if float(r["cpu_share"]) == 1.0}
        for t, vcpu in local_types:
            slow, note = (CONCURRENT_SLOWDOWN, f" x{CONCURRENT_SLOWDOWN:g} for {vcpu} at once") if vcpu > 1 else (1.0, "")
            for b, r in sorted(one_vcpu.items()):
                vm_rows.append([model, t, b, round(cell_latency_ms(r) * slow, 1), vcpu, vcpu,
                                f"{src}; 1-vCPU cell, one batch per vCPU{note}"])
        bm = base_models[model]
        model_rows.append([model, bm["top1_accuracy_pct"], bm["top5_accuracy_pct"], bm["param_mb"],
                           int(math.ceil(footprint_mb_of(rows))), round(cold_start_ms_of(rows)),
                           bm["gflops_per_image"], src + f" ({catalog_runtime})"])
    # Local functions run on the machine the local types stand for: its CPU bounds them too.
    hw = ["clock_ghz", "fp32_lanes", "fma_units", "vcpus_per_core", "ceiling_gflops_per_vcpu"]
    host = next((t for t in base_types if t["instance_type"].startswith("local.") and all(t.get(c) for c in hw)), None)
    if host:
        _write(os.path.join(out_dir, "function_platform.csv"), ["platform", *hw],
               [["local-functions", *(host[c] for c in hw)]])
    _write(os.path.join(out_dir, "function_latency.csv"),
           ["model", "memory_mb", "batch_size", "latency_ms", "source"], fn_rows)
    _write(os.path.join(out_dir, "vm_latency.csv"),
           ["model", "instance_type", "batch_size", "latency_ms", "max_concurrent_batches",
            "measured_concurrent_batches", "source"], vm_rows)
    _write(os.path.join(out_dir, "models.csv"),
           ["model", "top1_accuracy_pct", "top5_accuracy_pct", "param_mb", "memory_footprint_mb", "cold_start_ms",
            "gflops_per_image", "source"], model_rows)
    return {"function_latency.csv": len(fn_rows), "vm_latency.csv": len(vm_rows), "models.csv": len(model_rows)}
