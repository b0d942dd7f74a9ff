"""The catalog loader refuses rows the hardware could not deliver, and the compute model's figures.

The numbers are worked by hand here (not by the functions under test): a c5 core at 3.4 GHz with
2 AVX-512 FMA units computes 2 x 2 x 16 x 3.4 = 217.6 GFLOP/s, 108.8 per hyperthread.
"""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys

import pytest

from controller.catalog import Catalog, CatalogError
from controller.compute import CpuSpec, function_vcpus

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED = os.path.join(ROOT, "configs", "catalog")


def test_ceiling_of_a_c5_vcpu_and_of_a_whole_core():
    assert CpuSpec(3.4).ceiling_gflops_per_vcpu == pytest.approx(108.8)
    assert CpuSpec(2.6, vcpus_per_core=1).ceiling_gflops_per_vcpu == pytest.approx(166.4)
    assert CpuSpec(3.0, fp32_lanes=8).ceiling_gflops_per_vcpu == pytest.approx(48.0)  # AVX2


def test_function_vcpus_follow_memory_up_to_six():
    assert function_vcpus(1769) == pytest.approx(1.0)
    assert function_vcpus(442) == pytest.approx(0.25, abs=1e-3)
    assert function_vcpus(10240) == pytest.approx(5.79, abs=0.01)
    assert function_vcpus(20000) == 6.0


def test_shipped_catalogs_load_and_carry_the_compute_model():
    cat = Catalog(SHIPPED)
    assert cat.model("resnet18").gflops_per_image == pytest.approx(3.63)
    assert cat.model("vgg16").weights_mb == pytest.approx(528)
    assert cat.instance_type("c5.large").ceiling_gflops_per_vcpu == pytest.approx(108.8)
    assert cat.instance_type("m5.large").ceiling_gflops_per_vcpu == pytest.approx(99.2)
    Catalog(os.path.join(SHIPPED, "local"))


def _copy(tmp_path) -> str:
    d = tmp_path / "cat"
    shutil.copytree(SHIPPED, d, ignore=shutil.ignore_patterns("local", "measured", "aws_profiles", "*.py"))
    return str(d)


def _rewrite(path: str, edit) -> None:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    header = list(rows[0])
    rows = edit(rows)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, header)
        w.writeheader()
        w.writerows(rows)


def test_refuses_a_vm_row_over_its_types_ceiling(tmp_path):
    d = _copy(tmp_path)

    def edit(rows):
        # The old catalog's resnet18 on c5.2xlarge at batch 256: 53,753 images/s on 8 vCPUs
        # = 53,753 x 3.63 / 8 = 24,390 GFLOP/s per vCPU, against 108.8.
        rows.append(dict(rows[0], model="resnet18", instance_type="c5.2xlarge", batch_size="256",
                         latency_ms="4.7625", max_concurrent_batches="1"))
        return rows
    _rewrite(os.path.join(d, "vm_latency.csv"), edit)
    with pytest.raises(CatalogError) as e:
        Catalog(d)
    msg = str(e.value)
    n_rows = sum(1 for _ in open(os.path.join(d, "vm_latency.csv"))) - 1
    assert f"vm_latency.csv row {n_rows + 1} " in msg  # the last data row, by its line number
    assert "resnet18 on c5.2xlarge, batch 256" in msg and "53,753" in msg and "108.8" in msg
    assert "\n" not in msg


def test_refuses_a_function_row_over_the_platforms_ceiling(tmp_path):
    d = _copy(tmp_path)

    def edit(rows):
        # 1 vCPU (1769 MB) running resnet50 at batch 1 in 20 ms: 7.72 / 0.020 = 386 GFLOP/s.
        rows.append(dict(rows[0], model="resnet50", memory_mb="1769", batch_size="1", latency_ms="20"))
        return rows
    _rewrite(os.path.join(d, "function_latency.csv"), edit)
    with pytest.raises(CatalogError, match=r"function_latency.csv row \d+ \(resnet50 at 1769 MB = 1.00 vCPUs"):
        Catalog(d)


def test_a_catalog_without_hardware_columns_gets_the_generic_ceiling(tmp_path):
    d = _copy(tmp_path)
    _rewrite(os.path.join(d, "instance_types.csv"),
             lambda rows: [dict(r, clock_ghz="", fp32_lanes="", fma_units="", vcpus_per_core="") for r in rows])
    cat = Catalog(d)
    assert cat.instance_type("c5.large").ceiling_gflops_per_vcpu == 150.0


def test_refuses_models_without_flops(tmp_path):
    d = _copy(tmp_path)
    _rewrite(os.path.join(d, "models.csv"), lambda rows: [dict(r, gflops_per_image="") for r in rows])
    with pytest.raises(CatalogError, match="gflops_per_image"):
        Catalog(d)


def test_simulate_on_an_impossible_catalog_exits_2_with_one_line(tmp_path):
    d = _copy(tmp_path)
    _rewrite(os.path.join(d, "vm_latency.csv"),
             lambda rows: [dict(rows[0], latency_ms="0.01")] + rows[1:])
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"catalog:\n  dir: {d}\napps:\n  - name: a\n    slo_ms: 300\n    min_accuracy: 0.7\n")
    trace = tmp_path / "t.csv"
    trace.write_text("second,requests\n0,5\n1,5\n")
    r = subprocess.run([sys.executable, "-m", "controller.cli", "simulate", "--config", str(cfg), "--trace", str(trace),
                        "--policies", "vm-reactive"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2, r.stderr
    out = (r.stdout + r.stderr).strip().splitlines()
    assert len(out) == 1 and "vm_latency.csv row 2" in out[0] and "GFLOP/s per vCPU" in out[0]


def test_predicted_function_profiles_stay_under_the_ceiling(tmp_path):
    """A model without function rows gets them predicted from operator profiles (COP) by the
    profiler; no prediction is faster than the platform's vCPUs at their FP32 ceiling."""
    from controller.profiler.predicted_rows import write_predicted_function_rows

    d = _copy(tmp_path)
    _rewrite(os.path.join(d, "function_latency.csv"), lambda rows: [r for r in rows if r["model"] != "resnet50"])
    assert write_predicted_function_rows(d) > 0
    cat = Catalog(d)
    assert cat.function_source["resnet50"] != "measured"
    prof, g = cat.function_profile("resnet50"), 7.72
    for b, (mem, lat) in prof.by_batch.items():
        for m, ms in zip(mem, lat):
            vcpus = min(m / 1769, 6.0)
            assert b * 1000.0 / ms * g / vcpus <= 96.0 * (1 + 1e-9)  # Lambda: 2 x 2 x 16 x 3.0 GHz / 2
