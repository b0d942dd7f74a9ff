"""Measure a variant's block sequence on this machine and write it as catalog data.

    .venv/bin/python -m controller.profiler.partition_graph resnet50 vgg16 squeezenet
    .venv/bin/python -m controller.profiler.partition_graph --rescale resnet50 vgg16 squeezenet

writes configs/catalog/model_graphs/<model>.csv (one row per block) and <model>.json (the
whole-model figures). Each model is measured in its own subprocess so that the resident-set
figures (runtime base, peak) belong to that model alone.

Per block: parameter bytes, output activation bytes (float32, batch 1), activation bytes (every
intermediate tensor inside the block, from the symbol graph's inferred shapes: what a
static-allocated cached graph keeps), and `local_ms`, the median batch-1 latency of the block
run alone as a hybridized partition at full CPU on this machine.

Latency at a function memory size is not measured here (this machine cannot give a process a
Lambda-sized CPU share). It is the block's share of the measured sum, times the catalog's
whole-model function latency at that memory:

    latency_ms[b, m] = local_ms[b] / sum(local_ms) * catalog_latency_ms(model, m)

so a one-partition plan predicts exactly the catalog's figure; `--rescale` redoes only this step
from the blocks already measured, after the catalog changed. Below the smallest memory the
catalog profiles for the model (where the whole model did not fit) the curve is extrapolated
with latency proportional to 1/memory: Lambda's CPU share grows linearly with memory up to one
vCPU at 1,769 MB, and a partition may fit where the whole model did not.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time

from controller.config import REPO_ROOT

MEMORY_GRID_MB = (128, 256, 512, 768, 1024, 1536, 1769, 2048, 3008, 4096, 6144, 8192, 10240)
REPEATS = 5
OUT_DIR = os.path.join(REPO_ROOT, "configs", "catalog", "model_graphs")


def _rss_mb(field: str) -> float:
    """VmRSS (current) or VmHWM (peak) of this process, MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _median_ms(fn, repeats: int = REPEATS) -> float:
    fn()  # warm: the first call builds the cached graph
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    times.sort()
    return times[len(times) // 2]


def _activation_bytes(seq, in_shape) -> int:
    """Bytes of every tensor the block computes (float32), from the inferred internal shapes."""
    import mxnet as mx
    import numpy as np

    sym = seq(mx.sym.var("data"))
    internals = sym.get_internals()
    inputs = set(sym.list_arguments()) | set(sym.list_auxiliary_states())
    _, out_shapes, _ = internals.infer_shape(data=in_shape)
    total = 0
    for name, shape in zip(internals.list_outputs(), out_shapes):
        base = name[:-len("_output")] if name.endswith("_output") else name
        if base not in inputs and name not in inputs and shape is not None:
            total += int(np.prod(shape)) * 4
    return total


def measure(variant: str) -> tuple[list[dict], dict]:
    """Measure in this process: rows per block and the whole-model figures."""
    import mxnet as mx
    import numpy as np

    from serving.partition.graph import block_sequence, build_partition, param_bytes
    from serving.runtimes import spec_of
    from serving.runtimes.mxnet_runtime import build_net

    base_mb = _rss_mb("VmRSS")  # python + mxnet imported, no model yet
    spec = spec_of(variant)
    net, _ = build_net(spec)
    blocks = block_sequence(net)
    x = mx.nd.array(np.random.default_rng(0).standard_normal((1,) + spec.input_shape).astype("float32"))
    whole_ms = _median_ms(lambda: net(x).wait_to_read())
    rows, y = [], x
    for b in blocks:
        seq = build_partition(blocks, b.index, b.index + 1)
        act = _activation_bytes(build_partition(blocks, b.index, b.index + 1, hybridize=False), y.shape)
        local_ms = _median_ms(lambda: seq(y).wait_to_read())
        out = seq(y)
        rows.append({"block": b.index, "name": b.name, "children": len(b.children),
                     "param_bytes": param_bytes(b), "output_bytes": int(out.size) * 4,
                     "activation_bytes": act, "local_ms": round(local_ms, 3)})
        y = out
    meta = {"model": variant, "input_shape": list(spec.input_shape),
            "input_bytes": int(np.prod(spec.input_shape)) * 4, "num_blocks": len(blocks),
            "whole_local_ms": round(whole_ms, 3), "sum_block_local_ms": round(sum(r["local_ms"] for r in rows), 3),
            "runtime_base_mb": round(base_mb, 1), "peak_rss_mb": round(_rss_mb("VmHWM"), 1),
            "param_bytes": sum(r["param_bytes"] for r in rows),
            "measured_on": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
                            "machine": platform.machine(), "repeats": REPEATS,
                            "note": "shared 2-core machine; other engineers' jobs were running"}}
    return rows, meta


def catalog_latency_ms(variant: str, memory_mb: float) -> tuple[float, str]:
    """The catalog's whole-model batch-1 function latency, extrapolated below its first memory."""
    from controller.catalog import load_catalog

    prof = load_catalog(os.path.join(REPO_ROOT, "configs", "catalog")).function_profile(variant)
    if prof is None:
        raise SystemExit(f"{variant}: no function latency profile in the catalog")
    first_mb = float(prof.memory_mb[0])
    if memory_mb >= first_mb:
        return prof.latency_ms(memory_mb), "catalog"
    return prof.latency_ms(first_mb) * first_mb / memory_mb, f"extrapolated 1/memory below {first_mb:.0f} MB"


def write(variant: str, rows: list[dict], meta: dict, out_dir: str = OUT_DIR) -> str:
    total_local = sum(r["local_ms"] for r in rows)
    sources = {}
    for m in MEMORY_GRID_MB:
        whole, source = catalog_latency_ms(variant, m)
        sources[str(m)] = {"whole_model_ms": round(whole, 2), "source": source}
        for r in rows:
            r[f"ms_at_{m}"] = round(r["local_ms"] / total_local * whole, 3)
    meta["memory_grid_mb"] = list(MEMORY_GRID_MB)
    meta["whole_model_ms_by_memory"] = sources
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{variant}.csv")
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(os.path.join(out_dir, f"{variant}.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
        fh.write("\n")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--in-process", action="store_true", help="measure here (used by the per-model subprocess)")
    ap.add_argument("--out-dir", default=OUT_DIR)
    ap.add_argument("--rescale", action="store_true",
                    help="keep the measured blocks, recompute the per-memory latencies from the current catalog")
    args = ap.parse_args(argv)
    if args.rescale:
        for variant in args.models:
            with open(os.path.join(args.out_dir, f"{variant}.csv"), newline="") as fh:
                rows = [{k: (float(v) if k == "local_ms" else v) for k, v in r.items() if not k.startswith("ms_at_")}
                        for r in csv.DictReader(fh)]
            with open(os.path.join(args.out_dir, f"{variant}.json")) as fh:
                meta = json.load(fh)
            print(write(variant, rows, meta, args.out_dir), flush=True)
        return 0
    if args.in_process:
        for variant in args.models:
            rows, meta = measure(variant)
            print(write(variant, rows, meta, args.out_dir), flush=True)
        return 0
    for variant in args.models:
        subprocess.run([sys.executable, "-m", "controller.profiler.partition_graph", "--in-process",
                        "--out-dir", args.out_dir, variant], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
