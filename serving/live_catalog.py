"""The catalog the live control loop plans with: the served variants only, on local instance types.

The policy (the same one the simulator runs) reads latency profiles from a `Catalog`. The live
system serves variants the shipped catalog may not know (the digits app) and runs on local
instance types, so at start the daemon writes a small catalog directory:
- instance types: the configured catalog's rows for the allowed local types; when
  `serving.control.vm_boot_s` is set, its boot time (so the planner's horizon matches the boot
  the provider emulates);
- ImageNet variants: rows measured on this machine (`configs/catalog/local`, from
  `hybridserve profile`) when present, else the configured catalog's rows;
- digits variants: measured here and now (a few ms each: load, then time a forward pass at
  batch 1, 2, 4, 8). A VM runs one batch per vCPU; a function at `memory_mb` gets
  memory / 1769 of a vCPU, so below one vCPU its latency grows by 1769 / memory (the cgroup
  quota the local function provider sets). E.g. 1.2 ms at batch 1 -> 16.6 ms at 128 MB.
The simulator can be pointed at the same directory (bench/live_fidelity.py does).
"""
from __future__ import annotations

import csv
import os
import time

import numpy as np

from controller.catalog import Catalog

MB_PER_VCPU = 1769
_MEMORY_GRID_MB = (128, 256, 512, 1024, 1769, 3008)
_BATCHES = (1, 2, 4, 8)
_MEASURED_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "catalog",
                             "local")


def _read(directory: str, name: str) -> list[dict]:
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _write(directory: str, name: str, header: list[str], rows: list[dict]) -> None:
    with open(os.path.join(directory, name), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def measure_variant(variant: str, repeats: int = 5) -> tuple[dict[int, float], float]:
    """({batch: median ms of a forward pass}, load ms) of one variant on this process's CPU."""
    from serving.runtimes import load_model, spec_of

    t0 = time.perf_counter()
    model = load_model(variant)
    load_ms = (time.perf_counter() - t0) * 1000.0
    shape = tuple(spec_of(variant).input_shape)
    out = {}
    for b in _BATCHES:
        x = np.zeros((b,) + shape, np.float32)
        model.predict(x)  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            model.predict(x)
            times.append((time.perf_counter() - t) * 1000.0)
        out[b] = float(np.median(times))
    return out, load_ms


def build_live_catalog(base_dir: str, out_dir: str, variants: list[str], accuracy: dict[str, float],
                       instance_types: list[str], boot_s: float | None = None,
                       measure=measure_variant) -> Catalog:
    """Write the live catalog for `variants` under `out_dir` and load it."""
    os.makedirs(out_dir, exist_ok=True)
    it_rows = [r for r in _read(base_dir, "instance_types.csv") if r["instance_type"] in instance_types]
    missing = sorted(set(instance_types) - {r["instance_type"] for r in it_rows})
    if missing:
        raise ValueError(f"serving.control.instance_types: {missing} not in {base_dir}/instance_types.csv")
    if boot_s is not None:
        for r in it_rows:
            r["boot_s_mean"], r["boot_s_std"] = str(boot_s), "0"
    vcpu = {r["instance_type"]: int(r["vcpu"]) for r in it_rows}

    measured = {name: _read(_MEASURED_DIR, name) for name in ("models.csv", "vm_latency.csv", "function_latency.csv")}
    base = {name: _read(base_dir, name) for name in ("models.csv", "vm_latency.csv", "function_latency.csv")}

    def rows_for(name: str, model: str) -> list[dict]:
        own = [r for r in measured[name] if r["model"] == model]
        return own if own else [r for r in base[name] if r["model"] == model]

    models, vm_rows, fn_rows = [], [], []
    for v in variants:
        if v.startswith("digits-"):
            ms, load_ms = measure(v)
            models.append({"model": v, "top1_accuracy_pct": 100.0 * accuracy[v], "top5_accuracy_pct": 100.0,
                           "param_mb": 1, "memory_footprint_mb": 64, "cold_start_ms": round(load_ms, 1),
                           "source": "measured at start"})
            for t, n in vcpu.items():
                for b, lat in ms.items():
                    vm_rows.append({"model": v, "instance_type": t, "batch_size": b, "latency_ms": round(lat, 3),
                                    "max_concurrent_batches": n, "measured_concurrent_batches": n,
                                    "source": "measured at start; one batch per vCPU"})
            for mem in _MEMORY_GRID_MB:
                slow = max(1.0, MB_PER_VCPU / mem)
                for b, lat in ms.items():
                    fn_rows.append({"model": v, "memory_mb": mem, "batch_size": b,
                                    "latency_ms": round(lat * slow, 3), "source": "measured at start x CPU share"})
            continue
        m = rows_for("models.csv", v)
        if not m:
            continue  # not in any catalog: the policy cannot plan it (served from the head only)
        models.append(dict(m[0], top1_accuracy_pct=100.0 * accuracy.get(v, float(m[0]["top1_accuracy_pct"]) / 100)))
        vm_rows += [r for r in rows_for("vm_latency.csv", v) if r["instance_type"] in vcpu]
        fn_rows += rows_for("function_latency.csv", v)
    _write(out_dir, "instance_types.csv", ["instance_type", "vcpu", "memory_mb", "on_demand_usd_per_h",
                                           "spot_usd_per_h", "boot_s_mean", "boot_s_std"], it_rows)
    _write(out_dir, "models.csv", ["model", "top1_accuracy_pct", "top5_accuracy_pct", "param_mb",
                                   "memory_footprint_mb", "cold_start_ms", "source"], models)
    _write(out_dir, "vm_latency.csv", ["model", "instance_type", "batch_size", "latency_ms", "max_concurrent_batches",
                                       "measured_concurrent_batches", "source"], vm_rows)
    _write(out_dir, "function_latency.csv", ["model", "memory_mb", "batch_size", "latency_ms", "source"], fn_rows)
    return Catalog(out_dir)
