"""The compute model: what a vCPU can compute, and what a catalog row asks of it.

A CPU core retires at most `fma_units` fused multiply-adds per cycle on `fp32_lanes` lanes each,
2 FLOPs apiece, so its FP32 peak is 2 x fma_units x fp32_lanes x clock_ghz GFLOP/s. On EC2 a vCPU
is one hyperthread: `vcpus_per_core` = 2 vCPUs share that core, and with both busy on dense
FMA-bound kernels (convolutions) each gets about half of it. Worked for a c5 (Cascade Lake,
AVX-512, 2 FMA units, 3.4 GHz all-core turbo): 2 x 2 x 16 x 3.4 = 217.6 GFLOP/s per core, 108.8 per
vCPU. That per-vCPU figure is the ceiling a row of the catalog may not exceed.

What a row asks: a VM row serves `concurrency x batch / latency` images per second on the type's
vCPUs; a function row `batch / latency` on min(memory_mb / mb_per_vcpu, max_vcpus) vCPUs (Lambda's
rule: one vCPU at 1,769 MB, at most 6). Times the model's FLOPs per image, divided by those vCPUs,
that is the compute rate per vCPU the row claims. The catalog loader refuses a row above its
hardware's ceiling (`controller/catalog.py`), and `configs/catalog/derive_catalog.py` builds rows
from measured throughput scaled by the ratio of these ceilings.

Pure: no I/O; the catalog reads the hardware columns and calls these.
"""
from __future__ import annotations

from dataclasses import dataclass

# Used when a catalog gives no hardware columns: the most any x86 vCPU of the c5/m5 class
# sustains in FP32, generously (../shared/tools/roofline.py uses the same figure).
GENERIC_CEILING_GFLOPS_PER_VCPU = 150.0


@dataclass(frozen=True)
class CpuSpec:
    """What bounds one vCPU: its core's clock and vector units, and how many vCPUs share a core."""

    clock_ghz: float
    fp32_lanes: int = 16      # AVX-512: 16 FP32 lanes; AVX2: 8
    fma_units: int = 2        # FMA ports per core
    vcpus_per_core: int = 2   # 2 on EC2 and Lambda (hyperthreads); 1 where a vCPU is a whole core

    @property
    def core_peak_gflops(self) -> float:
        return 2.0 * self.fma_units * self.fp32_lanes * self.clock_ghz

    @property
    def ceiling_gflops_per_vcpu(self) -> float:
        """FP32 peak of one vCPU when every vCPU of the machine is busy."""
        return self.core_peak_gflops / self.vcpus_per_core


def function_vcpus(memory_mb: float, mb_per_vcpu: float = 1769.0, max_vcpus: float = 6.0) -> float:
    """vCPUs a function of `memory_mb` gets: in proportion to memory, capped (Lambda: 6 at 10,240 MB)."""
    return min(memory_mb / mb_per_vcpu, max_vcpus)


def vm_row_gflops_per_vcpu(gflops_per_image: float, batch: float, concurrency: float, latency_ms: float,
                           vcpus: float) -> float:
    """Compute rate per vCPU a VM row claims: concurrency x batch images every latency_ms."""
    images_per_s = concurrency * batch * 1000.0 / latency_ms
    return images_per_s * gflops_per_image / vcpus


def function_row_gflops_per_vcpu(gflops_per_image: float, batch: float, latency_ms: float,
                                 vcpus: float) -> float:
    """Compute rate per vCPU a function row claims: one batch every latency_ms on `vcpus`."""
    return batch * 1000.0 / latency_ms * gflops_per_image / vcpus
