"""The profile grid's validation and the CPU-limit arithmetic (no processes started)."""
import os

import pytest

from controller.profiler.cpu_limit import CpuLimit, cgroup_mode, fallback_time_scale, threads_for
from controller.profiler.executor import summarize_latencies
from controller.profiler.grid import ProfileGrid, memory_mb_of_share


def test_parse_sorts_dedups_and_counts_cells():
    g = ProfileGrid.parse("squeezenet,resnet18,squeezenet", "onnxruntime", "4,1,2,2", "1,0.5", repeats=2)
    assert g.models == ("squeezenet", "resnet18") and g.batches == (1, 2, 4) and g.cpu_shares == (0.5, 1.0)
    cells = g.cells()
    assert len(cells) == len(g) == 2 * 1 * 3 * 2
    # one child per (model, runtime, share): its batches are adjacent
    assert [c.batch for c in cells[:3]] == [1, 2, 4] and len({c.key for c in cells}) == len(cells)


@pytest.mark.parametrize("kw,needle", [
    (dict(models="squeezenet,alexnet"), "unknown model 'alexnet'"),
    (dict(runtimes="tvm"), "unknown runtime 'tvm'"),
    (dict(batches=""), "--batch is empty"),
    (dict(batches="1,x"), "'x' is not an integer"),
    (dict(batches="0"), "outside"),
    (dict(cpu_shares=" , "), "--cpu-shares is empty"),
    (dict(cpu_shares="8"), "outside"),
    (dict(repeats=0), "--repeats"),
])
def test_bad_grid_is_one_line(kw, needle):
    with pytest.raises(ValueError, match=None) as e:
        ProfileGrid.parse(**kw)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_share_to_memory_follows_lambda():
    assert [memory_mb_of_share(s) for s in (0.25, 0.5, 1, 2)] == [442, 884, 1769, 3538]


def test_fallback_threads_and_time_scale():
    assert [threads_for(s) for s in (0.25, 1, 1.4, 2, 3.5)] == [1, 1, 1, 2, 4]
    # a quarter vCPU: one thread, four times the measured time; no scaling at or above 1 vCPU
    assert fallback_time_scale(0.25) == 4.0 and fallback_time_scale(2) == 1.0
    lim = CpuLimit.create("t", 0.5, prefer="threads")
    assert lim.method == "threads" and lim.time_scale == 2.0 and lim.env["OMP_NUM_THREADS"] == "1"


def test_unwritable_root_falls_back_or_refuses(tmp_path):
    assert cgroup_mode(str(tmp_path)) == "none"
    assert CpuLimit.create("t", 1.0, root=str(tmp_path)).method == "threads"
    with pytest.raises(ValueError, match="no writable cgroup"):
        CpuLimit.create("t", 1.0, prefer="cgroup", root=str(tmp_path))


@pytest.mark.skipif(cgroup_mode() != "v1", reason="needs a writable cgroup v1 cpu hierarchy")
def test_cgroup_v1_quota_written_and_removed():
    lim = CpuLimit.create(f"test-{os.getpid()}", 0.25)
    try:
        assert lim.method == "cgroup-v1"
        assert open(os.path.join(lim.directory, "cpu.cfs_quota_us")).read().strip() == "25000"
    finally:
        lim.remove()
    assert not os.path.exists(lim.directory)


def test_summary_percentiles_and_throughput():
    s = summarize_latencies([10.0, 20.0, 30.0, 40.0], batch=4)
    assert s["p50_ms"] == 25.0 and s["mean_ms"] == 25.0 and s["throughput_per_s"] == 160.0
    assert s["p99_ms"] == pytest.approx(39.7)
