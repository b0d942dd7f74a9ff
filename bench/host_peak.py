"""What one vCPU of this machine computes at most: single-thread FP32 matrix multiply GFLOP/s.

Run: .venv/bin/python bench/host_peak.py [--size 2048] [--repeats 7]

A large SGEMM on one thread (OpenBLAS's AVX-512 kernel) runs close to the core's FMA peak, so
its rate bounds the clock from below: clock >= GFLOP/s / (2 FLOPs x 2 FMA units x 16 lanes).
configs/catalog/derive_catalog.py takes this machine's clock (HOST) from it, and every
measured cell must stay under the ceiling it implies. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import time  # noqa: E402

import numpy as np  # noqa: E402

FLOPS_PER_CYCLE = 2 * 2 * 16  # FMA = 2 FLOPs, 2 FMA units, 16 FP32 lanes (AVX-512)


def sgemm_gflops(n: int, repeats: int) -> list[float]:
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    a @ b  # warm-up: page faults, kernel selection
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        out.append(2.0 * n ** 3 / (time.perf_counter() - t) / 1e9)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    g = sgemm_gflops(a.size, a.repeats)
    best = max(g)
    print(json.dumps({"sgemm_n": a.size, "gflops_best": round(best, 1), "gflops_median": round(float(np.median(g)), 1),
                      "implied_clock_ghz_min": round(best / FLOPS_PER_CYCLE, 2),
                      "load_avg_1m": round(os.getloadavg()[0], 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
