"""A profile describes the machine it was taken on: the local types' clock is the nominal one or
what a single-thread SGEMM implies, whichever is higher, and the catalog written from cells a
faster machine measured loads against that machine's ceiling (the base one refuses them)."""
import pytest

from controller.catalog import Catalog, CatalogError
from controller.profiler.catalog_files import DEFAULT_BASE, write_catalog_files
from controller.profiler.host_cpu import BASE_HOST, host_cpu_spec, nominal_clock_ghz, sgemm_gflops


def test_the_clock_is_raised_by_the_sgemm_never_lowered():
    nominal = nominal_clock_ghz() or BASE_HOST.clock_ghz
    assert host_cpu_spec(sgemm_best_gflops=1.0).clock_ghz == pytest.approx(nominal, abs=0.01)
    # 230.4 GFLOP/s at 90 % of 2 x 2 x 16 FLOPs a cycle: 4.0 GHz, 256 GFLOP/s per vCPU.
    fast = host_cpu_spec(sgemm_best_gflops=230.4)
    assert fast.clock_ghz == pytest.approx(max(4.0, nominal)) and fast.ceiling_gflops_per_vcpu == pytest.approx(
        2 * 2 * 16 * fast.clock_ghz)
    # This machine's own SGEMM never claims more than its measured rate allows.
    best = max(sgemm_gflops(n=512, repeats=2))
    assert 0 < best <= host_cpu_spec(sgemm_best_gflops=best).ceiling_gflops_per_vcpu


def _cells(p50_ms: float) -> list[dict]:
    row = {"model": "squeezenet", "runtime": "mxnet", "cpu_share": "1", "memory_mb": "1769", "batch_size": "1",
           "repeats": "7", "p50_ms": str(p50_ms), "p95_ms": str(p50_ms * 1.1), "p99_ms": str(p50_ms * 1.2),
           "mean_ms": str(p50_ms), "cold_start_ms": "900", "process_start_ms": "100", "import_ms": "500",
           "load_ms": "200", "first_call_ms": "30", "rss_delta_mb": "120", "peak_rss_mb": "300",
           "method": "cgroup-v2", "host": "fast", "load_avg_1m": "0.1"}
    return [row]


def test_a_faster_machines_profile_loads_against_its_own_ceiling(tmp_path):
    # squeezenet (1.65 GFLOP) at 8 ms on one vCPU: 206 GFLOP/s, over the base 166.4, under 4 GHz's 256.
    base, fast = tmp_path / "base", tmp_path / "fast"
    for d in (base, fast):
        d.mkdir()
        write_catalog_files(str(d), _cells(8.0), base_catalog_dir=DEFAULT_BASE,
                            host=None if d == base else host_cpu_spec(sgemm_best_gflops=230.4))
    with pytest.raises(CatalogError, match="over local.small's FP32 ceiling of 166.4"):
        Catalog(str(base))
    cat = Catalog(str(fast))
    assert cat.vm_profile("squeezenet", "local.small") is not None
    assert cat.instance_type("local.small").on_demand_usd_per_h == pytest.approx(0.0425)  # prices copied
