"""A real, tiny profile (squeezenet, batch 1-2, two repeats): cells measured in a fresh child,
appended per cell, skipped on a rerun, only the missing ones measured after an interruption,
and catalog files the Catalog loads. The CLI's bad input is one line and exit code 2."""
import csv
import os
import subprocess
import sys

import pytest

from controller.catalog import Catalog
from controller.profiler.executor import CELLS_FILE, read_cells, run_profile
from controller.profiler.grid import ProfileGrid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def test_profile_resume_and_catalog_files(tmp_path):
    # onnxruntime: its import is ~10x lighter than mxnet's, which keeps this test short.
    grid = ProfileGrid.parse("squeezenet", "onnxruntime", "1,2", "1", repeats=2)
    out = str(tmp_path)
    s = run_profile(grid, out, progress=False)
    assert (s.measured, s.skipped, s.failed) == (2, 0, [])
    rows = read_cells(os.path.join(out, CELLS_FILE))
    assert [int(r["batch_size"]) for r in rows] == [1, 2]
    for r in rows:
        assert 0 < float(r["p50_ms"]) <= float(r["p95_ms"]) <= float(r["p99_ms"])
        # a cold start is a whole process start + import + load: far above a warm call
        assert float(r["cold_start_ms"]) > float(r["p50_ms"])
        assert float(r["rss_delta_mb"]) > 10 and r["memory_mb"] == "1769"

    # rerun: nothing to do
    assert run_profile(grid, out, progress=False).measured == 0
    # an interruption after the first cell: only the second is measured again
    with open(os.path.join(out, CELLS_FILE), newline="") as fh:
        lines = fh.readlines()
    with open(os.path.join(out, CELLS_FILE), "w", newline="") as fh:
        fh.writelines(lines[:2])
    s = run_profile(grid, out, progress=False)
    assert (s.measured, s.skipped) == (1, 1)
    assert sorted(int(r["batch_size"]) for r in read_cells(os.path.join(out, CELLS_FILE))) == [1, 2]

    cat = Catalog(out)
    prof = cat.function_profile("squeezenet")
    assert list(prof.memory_mb) == [1769.0]
    with open(os.path.join(out, "function_latency.csv"), newline="") as fh:
        fn = list(csv.DictReader(fh))
    assert fn[0]["source"].startswith("measured on ")
    assert cat.vm_profile("squeezenet", "local.small") is not None
    assert cat.model("squeezenet").memory_footprint_mb > 10


def test_a_child_over_its_time_limit_is_killed_and_reported(tmp_path):
    grid = ProfileGrid.parse("squeezenet", "mxnet", "1", "1", repeats=1)
    s = run_profile(grid, str(tmp_path), progress=False, child_timeout_s=0.3)  # mxnet's import alone is longer
    assert s.measured == 0 and len(s.failed) == 1 and "timed out after 0.3 s" in s.failed[0]
    assert read_cells(os.path.join(str(tmp_path), CELLS_FILE)) == []


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "controller.cli", "profile", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_cli_unknown_model_subprocess_one_line_exit_2(tmp_path):
    r = _cli("--models", "squeezenet,nosuch", "--out", str(tmp_path))
    assert r.returncode == 2 and "unknown model 'nosuch'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / CELLS_FILE)  # nothing measured


@pytest.mark.parametrize("args,needle", [
    (["--batch", ","], "--batch is empty"),
    (["--cpu-shares", ""], "--cpu-shares is empty"),
    (["--runtimes", "mxnet", "--catalog-runtime", "onnxruntime"], "--catalog-runtime"),
    (["--timeout-s", "0"], "--timeout-s"),
])
def test_cli_bad_input_one_line_exit_2(tmp_path, capsys, args, needle):
    from controller.cli import main
    assert main(["profile", *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / CELLS_FILE)


@pytest.mark.slow
def test_mxnet_cgroup_and_thread_fallback_both_measure(tmp_path):
    grid = ProfileGrid.parse("squeezenet", "mxnet", "1", "0.5", repeats=2)
    for how in ("auto", "threads"):
        s = run_profile(grid, str(tmp_path / how), progress=False, cpu_limit=how)
        assert s.measured == 1 and not s.failed
    assert read_cells(str(tmp_path / "threads" / CELLS_FILE))[0]["method"] == "threads"
