"""This machine's CPU as the compute model sees it (controller/compute.py), for the local
instance types a profile of it describes.

The base catalog's `local.*` rows name the machine they were measured on (2.6 GHz, AVX-512, 2
FMA units, one vCPU per core). A profile taken on another machine describes that machine, so
its catalog's local types get this machine's clock: the larger of the nominal one
(/proc/cpuinfo) and the one a single-thread SGEMM implies. A large SGEMM runs at about 90 % of
the core's FMA peak (OpenBLAS's AVX-512 kernel), so clock >= GFLOP/s / (2 x 2 x 16 x 0.9). A
virtual machine shows its nominal clock, never its turbo one; the SGEMM sees the turbo.
E.g. here: SGEMM 152 GFLOP/s -> 2.64 GHz (nominal 2.6) -> 169 GFLOP/s per vCPU.
"""
from __future__ import annotations

import dataclasses
import time

from controller.compute import CpuSpec

# The base catalog's local machine (configs/catalog/derive_catalog.py HOST): the vector units.
BASE_HOST = CpuSpec(clock_ghz=2.6, fp32_lanes=16, fma_units=2, vcpus_per_core=1)
SGEMM_EFFICIENCY = 0.9  # share of the FMA peak a large single-thread SGEMM reaches


def sgemm_gflops(n: int = 2048, repeats: int = 3) -> list[float]:
    """Single-thread FP32 n x n matrix multiply rates, GFLOP/s (first call untimed)."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    out = []
    with threadpool_limits(limits=1):
        a @ b  # page faults, kernel selection
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            out.append(2.0 * n ** 3 / (time.perf_counter() - t) / 1e9)
    return out


def nominal_clock_ghz(path: str = "/proc/cpuinfo") -> float | None:
    try:
        with open(path) as fh:
            mhz = [float(line.split(":")[1]) for line in fh if line.startswith("cpu MHz")]
    except (OSError, ValueError):
        return None
    return max(mhz) / 1000.0 if mhz else None


def host_cpu_spec(base: CpuSpec = BASE_HOST, sgemm_best_gflops: float | None = None) -> CpuSpec:
    """`base` with this machine's clock (nominal, or what its SGEMM implies if that is higher)."""
    best = sgemm_best_gflops if sgemm_best_gflops is not None else max(sgemm_gflops())
    implied = best / (2.0 * base.fma_units * base.fp32_lanes * SGEMM_EFFICIENCY)
    clock = max(nominal_clock_ghz() or base.clock_ghz, implied)
    return dataclasses.replace(base, clock_ghz=round(clock, 2))
