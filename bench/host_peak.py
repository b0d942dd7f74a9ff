"""What one vCPU of this machine computes at most: single-thread FP32 matrix multiply GFLOP/s.

Run: .venv/bin/python bench/host_peak.py [--size 2048] [--repeats 7]

A large SGEMM on one thread (OpenBLAS's AVX-512 kernel) runs close to the core's FMA peak, so
its rate bounds the clock from below (controller/profiler/host_cpu.py, which a profile uses for
the local types it writes). configs/catalog/derive_catalog.py's HOST is this machine's clock,
and every measured cell must stay under the ceiling it implies. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from controller.profiler.host_cpu import host_cpu_spec, sgemm_gflops  # noqa: E402

FLOPS_PER_CYCLE = 2 * 2 * 16  # FMA = 2 FLOPs, 2 FMA units, 16 FP32 lanes (AVX-512)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    g = sgemm_gflops(a.size, a.repeats)
    best = max(g)
    spec = host_cpu_spec(sgemm_best_gflops=best)
    print(json.dumps({"sgemm_n": a.size, "gflops_best": round(best, 1), "gflops_median": round(float(np.median(g)), 1),
                      "implied_clock_ghz_min": round(best / FLOPS_PER_CYCLE, 2), "host_clock_ghz": spec.clock_ghz,
                      "ceiling_gflops_per_vcpu": round(spec.ceiling_gflops_per_vcpu, 1),
                      "load_avg_1m": round(os.getloadavg()[0], 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
