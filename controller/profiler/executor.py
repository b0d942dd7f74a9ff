"""Run the profile grid: one fresh child process per (model, runtime, CPU share), under that
share's CPU limit, timing every batch size; append each cell to `profile_cells.csv` as soon as
it is measured, so an interrupted run resumes where it stopped (cells already in the file are
skipped). Then (re)write the catalog files from every cell in the file.
"""
from __future__ import annotations

import csv
import ctypes
import itertools
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from controller.profiler.cpu_limit import CpuLimit
from controller.profiler.grid import Cell, ProfileGrid, memory_mb_of_share
from controller.profiler.host_cpu import host_cpu_spec
from controller.profiler.worker import MARKER

CELLS_FILE = "profile_cells.csv"
CELL_COLUMNS = ["model", "runtime", "cpu_share", "memory_mb", "batch_size", "repeats", "p50_ms", "p95_ms",
                "p99_ms", "mean_ms", "p50_cpu_ms", "throughput_per_s", "cold_start_ms", "process_start_ms", "import_ms",
                "load_ms", "first_call_ms", "rss_delta_mb", "peak_rss_mb", "method", "host", "load_avg_1m", "measured_at"]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass
class ProfileSummary:
    path: str                      # the cells file
    measured: int = 0              # cells measured by this run
    skipped: int = 0               # cells already in the file
    failed: list = field(default_factory=list)  # one line per child that died
    methods: set = field(default_factory=set)   # CPU-limit methods used


def read_cells(path: str) -> list[dict]:
    """Rows of a cells file ([] when there is none yet)."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return rows


def cell_key(row: dict) -> tuple[str, str, str, int]:
    return (row["model"], row["runtime"], f"{float(row['cpu_share']):g}", int(row["batch_size"]))


def summarize_latencies(latencies_ms, batch: int) -> dict:
    """Percentiles and throughput of one cell's timed calls (throughput from the mean call)."""
    a = np.asarray(latencies_ms, dtype=float)
    mean = float(a.mean())
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": mean,
            "throughput_per_s": batch * 1000.0 / mean if mean > 0 else float("nan")}


class _CellWriter:
    """Appends rows, flushed and fsynced per cell so a kill loses at most the cell in flight."""

    def __init__(self, path: str):
        existing = None
        if os.path.exists(path) and os.path.getsize(path) > 0:
            with open(path, newline="") as fh:
                existing = next(csv.reader(fh), None)
            if existing != CELL_COLUMNS:
                raise ValueError(f"{path}: not a profile cells file of this version (other columns); "
                                 f"move it away to start afresh")
        self.fh = open(path, "a", newline="")
        self.w = csv.DictWriter(self.fh, CELL_COLUMNS)
        if existing is None:
            self.w.writeheader()

    def write(self, row: dict) -> None:
        self.w.writerow({k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in row.items()})
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        self.fh.close()


def _child_setup(limit: CpuLimit | None) -> None:
    """preexec hook: die with the parent (Linux PR_SET_PDEATHSIG), then join the CPU limit."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except OSError:
        pass
    if limit is not None:
        limit.join()


def _spawn(spec: dict, limit: CpuLimit | None, python: str, stderr_fh) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PYTHONUNBUFFERED="1", **(limit.env if limit else {}))
    spec = dict(spec, spawn_wall_s=time.time())
    return subprocess.Popen([python, "-m", "controller.profiler.worker", json.dumps(spec)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=stderr_fh, text=True,
                            preexec_fn=lambda: _child_setup(limit))


def _events(proc: subprocess.Popen):
    for line in proc.stdout:
        if line.startswith(MARKER):
            yield json.loads(line[len(MARKER):])


def _tail(fh, n_chars: int = 300) -> str:
    fh.seek(0)
    text = fh.read().decode(errors="replace").strip().splitlines()
    last = [t for t in text if t.strip()][-1:] if text else []
    return (last[0][-n_chars:]) if last else "no output"


class _Progress:
    """tqdm on a terminal, else one line per cell (readable in logs and CI)."""

    def __init__(self, total: int, done: int, enabled: bool):
        self.total, self.done, self.enabled, self.bar = total, done, enabled, None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=done, unit="cell", file=sys.stderr)

    def cell(self, text: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(1)
        elif self.enabled:
            print(f"[{self.done}/{self.total}] {text}", file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        if self.enabled:
            (self.bar.write if self.bar is not None else (lambda t: print(t, file=sys.stderr, flush=True)))(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_profile(grid: ProfileGrid, out_dir: str, *, cpu_limit: str = "auto", progress: bool = True,
                python: str = sys.executable, child_timeout_s: float = 900.0,
                base_catalog_dir: str | None = None, catalog_runtime: str | None = None,
                host: str | None = None) -> ProfileSummary:
    """Measure every cell of `grid` missing from `<out_dir>/profile_cells.csv`, then write the
    catalog files there (see catalog_files). cpu_limit: "auto" | "cgroup" | "threads"."""
    from controller.profiler.catalog_files import write_catalog_files

    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, CELLS_FILE)
    host = host or platform.node() or "this machine"
    done = {cell_key(r) for r in read_cells(path)}
    cells = grid.cells()
    todo = [c for c in cells if c.key not in done]
    summary = ProfileSummary(path, skipped=len(cells) - len(todo))
    bar = _Progress(len(cells), summary.skipped, progress)
    writer = _CellWriter(path)
    previous = _terminate_as_interrupt()
    prepared: set[tuple[str, str]] = set()
    try:
        for (model, runtime, share), group in itertools.groupby(todo, key=lambda c: (c.model, c.runtime, c.cpu_share)):
            group = list(group)
            if runtime == "onnxruntime" and (model, runtime) not in prepared:
                # The first load exports the ONNX graph (tens of seconds); do it once, untimed,
                # so every timed cold start reads the cached export as a deployed function would.
                try:
                    _run_child({"model": model, "runtime": runtime, "prepare": True, "batches": [], "repeats": 1},
                               None, python, child_timeout_s)
                except RuntimeError as e:  # listed like any failed cell; the other models go on
                    summary.failed.append(f"{e} (preparing the ONNX export)")
                    bar.note(f"hybridserve profile: {summary.failed[-1]}")
                    continue
                prepared.add((model, runtime))
            _measure_group(group, grid, share, cpu_limit, python, child_timeout_s, host, writer, summary, bar)
    finally:
        writer.close()
        bar.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    rows = read_cells(path)
    if rows:
        write_catalog_files(out_dir, rows, base_catalog_dir=base_catalog_dir,
                            catalog_runtime=catalog_runtime or grid.runtimes[0], host=host_cpu_spec())
    return summary


def _terminate_as_interrupt():
    """Treat SIGTERM like Ctrl-C (main thread only), so the child is stopped and its cgroup
    removed; the cells written so far stay for the next run."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return None


def _run_child(spec: dict, limit: CpuLimit | None, python: str, timeout_s: float) -> list[dict]:
    with tempfile.TemporaryFile() as err:
        proc = _spawn(spec, limit, python, err)
        timer = threading.Timer(timeout_s, proc.kill)
        timer.start()
        try:
            events = list(_events(proc))
            proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"{spec['model']} on {spec['runtime']}: child exited {proc.returncode}: {_tail(err)}")
    return events


def _measure_group(group: list[Cell], grid: ProfileGrid, share: float, prefer: str, python: str,
                   timeout_s: float, host: str, writer: _CellWriter, summary: ProfileSummary, bar: _Progress):
    model, runtime = group[0].model, group[0].runtime
    name = f"{os.getpid()}-{model}-{runtime}-{share:g}".replace(".", "_")
    limit = CpuLimit.create(name, share, prefer)
    summary.methods.add(limit.method)
    spec = {"model": model, "runtime": runtime, "batches": [c.batch for c in group], "repeats": grid.repeats,
            "warmup": grid.warmup, "threads": int(limit.env["OMP_NUM_THREADS"]), "time_scale": limit.time_scale}
    loaded, failure = None, None
    with tempfile.TemporaryFile() as err:
        proc = _spawn(spec, limit, python, err)
        # A child that hangs without printing would block the read loop: a timer kills it.
        timer = threading.Timer(timeout_s, proc.kill)
        timer.start()
        try:
            for ev in _events(proc):
                if ev["event"] == "loaded":
                    loaded = ev
                elif ev["event"] == "cell":
                    row = _row(model, runtime, share, ev, loaded, grid.repeats, limit.method, host)
                    writer.write(row)
                    summary.measured += 1
                    bar.cell(f"{model} {runtime} share {share:g} batch {ev['batch']}: p50 {row['p50_ms']:.1f} ms")
            proc.wait()
            if not timer.is_alive():
                failure = f"timed out after {timeout_s:g} s"
            elif proc.returncode != 0:
                # e.g. killed for memory: its missing cells stay missing and are retried next run
                failure = f"child exited {proc.returncode}: {_tail(err)}"
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            limit.remove()
    if failure:
        summary.failed.append(f"{model} {runtime} share {share:g}: {failure}")
        bar.note(f"hybridserve profile: {summary.failed[-1]}")


def _row(model, runtime, share, ev, loaded, repeats, method, host) -> dict:
    b = int(ev["batch"])
    s = summarize_latencies(ev["latencies_ms"], b)
    loaded = loaded or {}
    return {"model": model, "runtime": runtime, "cpu_share": f"{share:g}", "memory_mb": memory_mb_of_share(share),
            "batch_size": b, "repeats": repeats, **s,
            "p50_cpu_ms": float(np.percentile(ev.get("cpu_ms") or [float("nan")], 50)),
            "cold_start_ms": float(loaded.get("cold_start_ms", float("nan"))),
            "process_start_ms": float(loaded.get("process_start_ms", float("nan"))),
            "import_ms": float(loaded.get("import_ms", float("nan"))),
            "load_ms": float(loaded.get("load_ms", float("nan"))),
            "first_call_ms": float(loaded.get("first_call_ms", float("nan"))),
            # Footprint = what the runtime, the model and this batch's buffers add to a bare
            # interpreter: the memory a function of this model needs beyond Python itself.
            "rss_delta_mb": float(ev["rss_mb"]) - float(loaded.get("rss_start_mb", 0.0)),
            "peak_rss_mb": float(ev["peak_rss_mb"]), "method": method, "host": host,
            # The machine's 1-minute load average as the cell ends: a cell taken beside other
            # work reads slower than the hardware is, and this says so.
            "load_avg_1m": os.getloadavg()[0],
            "measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
