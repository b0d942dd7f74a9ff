"""Predicted function rows: for each model a catalog lists with no measured function rows, its
latency per (memory, batch) predicted from operator profiles (COP), written as catalog rows.

The catalog only reads rows (issue 22: it imports nothing above the floor), so the prediction is
made here, by `hybridserve profile` (after measuring, or alone with `--predict-only`), and lands in
`<catalog>/function_latency_predicted.csv`: the columns of function_latency.csv, `source`
"predicted (COP)". The catalog checks those rows against the hardware like measured ones, and a
measured row always wins over a predicted one.

The rule, per missing model m, batch b and memory M among the cells the catalog measured:
1. COP predicts every model at (b, M / 1769 vCPUs) on *this machine* (the operator profile).
2. The median over the measured models of measured / predicted at that (M, b) scales it to the
   catalog's platform, so the same operator profile serves the local catalog and the Lambda one.
3. It is never faster than the platform's vCPUs at their FP32 ceiling (b x GFLOPs per image /
   (vCPUs x ceiling)), and a size below m's footprint gets no row.
"""
from __future__ import annotations

import csv
import logging
import os

import numpy as np

from controller.catalog import MAX_FUNCTION_VCPUS, MB_PER_VCPU, PREDICTED_FUNCTION_FILE, Catalog
from controller.compute import function_vcpus
from controller.profiler.cop import predictor as cop

log = logging.getLogger("hybridserve.profiler")

COLUMNS = ["model", "memory_mb", "batch_size", "latency_ms", "source"]


def _measured_rows(directory: str) -> dict[str, dict[int, list[tuple[int, float]]]]:
    """function_latency.csv as model -> batch -> [(memory_mb, latency_ms)]."""
    measured: dict[str, dict[int, list[tuple[int, float]]]] = {}
    with open(os.path.join(directory, "function_latency.csv"), newline="") as fh:
        for r in csv.DictReader(fh):
            measured.setdefault(r["model"], {}).setdefault(int(r["batch_size"]), []).append(
                (int(r["memory_mb"]), float(r["latency_ms"])))
    return measured


def _fastest_function_ms(catalog: Catalog, model: str, batch: int, memory_mb: float) -> float:
    """The least time the function platform's vCPUs need for a batch at their FP32 ceiling."""
    g = catalog.model(model).gflops_per_image
    vcpus = function_vcpus(memory_mb, MB_PER_VCPU, MAX_FUNCTION_VCPUS)
    return batch * g * 1000.0 / (vcpus * catalog.function_ceiling_gflops_per_vcpu)


def predicted_function_rows(directory: str) -> list[dict]:
    """The predicted rows for the catalog under `directory` (empty when every model is measured,
    nothing is measured to scale by, or no operator profile is stored)."""
    catalog = Catalog(directory)
    measured = _measured_rows(directory)
    missing = [m.name for m in catalog.models if catalog.function_source.get(m.name) != "measured"]
    if not missing or not measured:
        return []
    try:
        graphs = cop.cached_graph_models()
    except OSError as e:
        log.warning("no operator profiles (%s): no predicted function latencies for %s", e, ", ".join(missing))
        return []
    cells = sorted({(mem, b) for by_batch in measured.values() for b, rows in by_batch.items() for mem, _ in rows})
    ratios: dict[tuple[int, int], list[float]] = {}
    for model, by_batch in measured.items():
        if model not in graphs:
            continue
        for b, rows in by_batch.items():
            for mem, ms in rows:
                ratios.setdefault((mem, b), []).append(ms / cop.predict_latency_ms(model, b, mem / MB_PER_VCPU))
    out = []
    for model in missing:
        if model not in graphs:
            continue
        footprint_mb = catalog.model(model).memory_footprint_mb
        for mem, b in cells:
            if mem < footprint_mb or not ratios.get((mem, b)):
                continue
            ms = max(float(np.median(ratios[(mem, b)])) * cop.predict_latency_ms(model, b, mem / MB_PER_VCPU),
                     _fastest_function_ms(catalog, model, b, mem))
            # latency_ms unrounded (repr round-trips a float), so the catalog loads exactly the prediction
            out.append({"model": model, "memory_mb": mem, "batch_size": b, "latency_ms": repr(ms), "source": cop.SOURCE})
    return out


def write_predicted_function_rows(directory: str) -> int:
    """Write PREDICTED_FUNCTION_FILE under `directory` (removing a stale one when nothing is predicted);
    returns the number of rows written."""
    rows = predicted_function_rows(directory)
    path = os.path.join(directory, PREDICTED_FUNCTION_FILE)
    if not rows:
        if os.path.exists(path):
            os.remove(path)
        return 0
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)
    return len(rows)
