"""The measuring child: `python -m controller.profiler.worker '<json spec>'`.

Run in a fresh process (under the parent's CPU limit) so that its cold start is real: process
start, runtime import and model load, as a function's first call pays them. It then times
`predict` at each batch size and prints one JSON line per result, prefixed with MARKER so stray
library output on stdout cannot be mistaken for a result:

    {"event": "loaded", "process_start_ms", "import_ms", "load_ms", "cold_start_ms", "rss_*_mb"}
    {"event": "cell", "batch", "latencies_ms": [...], "cpu_ms": [...], "rss_mb", "peak_rss_mb"}

Spec: model, runtime, batches, repeats, warmup, threads, time_scale, spawn_wall_s (the parent's
clock at spawn) and prepare (load only, to fill the ONNX export cache before timing anything).
"""
from __future__ import annotations

import time

_T0_WALL_S = time.time()  # first thing: when this interpreter got to run our code

import json  # noqa: E402
import sys  # noqa: E402

MARKER = "@@profile "


def _status_mb(field: str) -> float:
    """VmRSS / VmHWM of this process from /proc, in MB (no psutil needed)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _emit(obj: dict) -> None:
    sys.stdout.write(MARKER + json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(spec: dict) -> int:
    scale = float(spec.get("time_scale", 1.0))
    rss_start_mb = _status_mb("VmRSS")
    t_import = time.perf_counter()
    import numpy as np  # the runtime import: what a function's INIT pays before the model
    if spec["runtime"] == "mxnet":
        import mxnet  # noqa: F401
    else:
        import onnxruntime  # noqa: F401
    from serving.runtimes import load_model
    import_ms = (time.perf_counter() - t_import) * 1000.0
    rss_runtime_mb = _status_mb("VmRSS")
    t_load = time.perf_counter()
    threads = int(spec.get("threads", 1))
    model = load_model(spec["model"], runtime=spec["runtime"], num_threads=threads)
    load_ms = (time.perf_counter() - t_load) * 1000.0
    if spec.get("prepare"):
        _emit({"event": "prepared"})
        return 0
    rng = np.random.default_rng(0)
    first = rng.random((1,) + tuple(model.input_shape), dtype=np.float32)
    t_first = time.perf_counter()
    model.predict(first)  # the cold call itself: graph caches are built on the first run
    first_call_ms = (time.perf_counter() - t_first) * 1000.0
    process_start_ms = max(0.0, (_T0_WALL_S - float(spec["spawn_wall_s"])) * 1000.0)
    cold_ms = process_start_ms + import_ms + load_ms + first_call_ms
    _emit({"event": "loaded", "process_start_ms": process_start_ms * scale, "import_ms": import_ms * scale,
           "load_ms": load_ms * scale, "first_call_ms": first_call_ms * scale, "cold_start_ms": cold_ms * scale,
           "rss_start_mb": rss_start_mb, "rss_runtime_mb": rss_runtime_mb, "rss_loaded_mb": _status_mb("VmRSS")})
    for b in spec["batches"]:
        x = rng.random((int(b),) + tuple(model.input_shape), dtype=np.float32)
        for _ in range(int(spec.get("warmup", 1))):
            model.predict(x)  # a new batch size rebuilds mxnet's static graph: not a warm call
        lat, cpu = [], []
        for _ in range(int(spec["repeats"])):
            t, c = time.perf_counter(), time.process_time()
            model.predict(x)
            lat.append((time.perf_counter() - t) * 1000.0 * scale)
            # CPU time is what a busy shared machine does not inflate: with wall time it
            # tells contention (wall >> cpu / share) from the quota itself.
            cpu.append((time.process_time() - c) * 1000.0)
        _emit({"event": "cell", "batch": int(b), "latencies_ms": lat, "cpu_ms": cpu, "rss_mb": _status_mb("VmRSS"),
               "peak_rss_mb": _status_mb("VmHWM")})
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
