"""The catalog the live control loop plans with: the served variants only, on local instance types.

The policy (the same one the simulator runs) reads latency profiles from a `Catalog`. The live
system serves variants the shipped catalog may not know (the digits app) and runs on local
instance types, so at start the daemon writes a small catalog directory:
- instance types: the configured catalog's rows for the allowed local types; when
  `serving.control.vm_boot_s` is set, its boot time (so the planner's horizon matches the boot
  the provider emulates);
- ImageNet variants: rows measured on this machine (`configs/catalog/local`, from
  `hybridserve profile`) when present, else the configured catalog's rows;
- digits variants: measured here and now (a few ms each: load, then time a forward pass at
  batch 1, 2, 4, 8). A VM runs one batch per vCPU; a function at `memory_mb` gets
  memory / 1769 of a vCPU, so below one vCPU its latency grows by 1769 / memory (the cgroup
  quota the local function provider sets). E.g. 1.2 ms at batch 1 -> 16.6 ms at 128 MB.
  Their function cold start is measured too when the daemon asks (`measure_function_cold`: a
  real local function instance, started, loaded and timed, minus its warm call and the config's
  `container_init_ms`, which the simulator adds back; `set_function_cold_start`), not the
  in-process load time; the daemon runs it while Ray and Serve start;
- once Serve is up, the daemon times requests through the HTTP proxy and the router to each
  variant (`measure_router_latency_ms`; ImageNet variants with fewer requests) and adds the median beyond the forward pass to the
  variant's VM and function rows (`add_router_overhead`): the simulator's service time is then
  what a client of this machine sees, not the bare forward pass; the spread around the median
  goes to `vm_latency_jitter.csv` (the simulator can draw from it);
- a procured VM's path is longer than the head's in-process one: the router hands the tensor to
  a replica on another Ray node through a Serve handle, where `@serve.batch` holds a lone request
  for its wait. The daemon times that path without the forward pass (`measure_vm_path_ms`: a
  `PathProbe` replica on the head, each variant's input and batching) and adds its median to the
  procured types' rows (`add_vm_path_overhead`). The head keeps its own rows under
  `<type>@head` (`head_catalog_type`), so when it is a standing VM of a procured type (the digits
  app) its in-process capacity is not planned as if it took the VM path. Function rows keep the
  head path's overhead (a live warm function call is faster than that; see docs/live.md).
The simulator can be pointed at the same directory (bench/live_fidelity.py copies the daemon's,
whose path /status shows as control.catalog_dir).
"""
from __future__ import annotations

import csv
import logging
import os
import time

import numpy as np

from controller.catalog import MB_PER_VCPU, Catalog

log = logging.getLogger("hybridserve.catalog")

_MEMORY_GRID_MB = (128, 256, 512, 1024, 1769, 3008)
_BATCHES = (1, 2, 4, 8)
_MODEL_HEADER = ["model", "top1_accuracy_pct", "top5_accuracy_pct", "param_mb", "memory_footprint_mb", "cold_start_ms",
                 "gflops_per_image", "source"]
_VM_HEADER = ["model", "instance_type", "batch_size", "latency_ms", "max_concurrent_batches",
              "measured_concurrent_batches", "source"]
# A digits variant's forward pass: an 8x8 input through small dense layers, well under a MFLOP
# (2 FLOPs a multiply-add); a figure for the catalog's check against the hardware, not a plan input.
_DIGITS_GFLOPS = 0.001
_MEASURED_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "catalog",
                             "local")


def _read(directory: str, name: str) -> list[dict]:
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _write(directory: str, name: str, header: list[str], rows: list[dict]) -> None:
    with open(os.path.join(directory, name), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def measure_variant(variant: str, repeats: int = 5) -> tuple[dict[int, float], float]:
    """({batch: median ms of a forward pass}, load ms) of one variant on this process's CPU."""
    from serving.runtimes import load_model, spec_of

    t0 = time.perf_counter()
    model = load_model(variant)
    load_ms = (time.perf_counter() - t0) * 1000.0
    shape = tuple(spec_of(variant).input_shape)
    out = {}
    for b in _BATCHES:
        x = np.zeros((b,) + shape, np.float32)
        model.predict(x)  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            model.predict(x)
            times.append((time.perf_counter() - t) * 1000.0)
        out[b] = float(np.median(times))
    return out, load_ms


def measure_function_cold(variant: str, memory_mb: int) -> tuple[float, float]:
    """(cold, warm) ms of one real local function instance of `variant` at `memory_mb` (its CPU
    quota as the router's functions get it): the first call starts the process, imports the
    runtime and loads the weights; the second is warm."""
    from procurement.providers.local import LocalFunctionProvider
    from serving.runtimes import spec_of

    fp = LocalFunctionProvider(keep_alive_s=60.0, concurrency_limit=1)
    try:
        fp.deploy(variant, memory_mb)
        x = np.zeros((1,) + tuple(spec_of(variant).input_shape), np.float32)
        cold, warm = fp.invoke(variant, x, 120.0), fp.invoke(variant, x, 120.0)
        if not (cold.ok and warm.ok):
            raise RuntimeError(f"function {variant}: {cold.error or warm.error}")
        return cold.duration_ms, warm.duration_ms
    finally:
        fp.close()


HEAD_SUFFIX = "@head"


def head_catalog_type(head_type: str | None) -> str | None:
    """The live catalog's name for the head's rows (see the module docstring)."""
    return f"{head_type}{HEAD_SUFFIX}" if head_type else None


def build_live_catalog(base_dir: str, out_dir: str, variants: list[str], accuracy: dict[str, float],
                       instance_types: list[str], boot_s: float | None = None,
                       measure=measure_variant, function_cold=None, container_init_ms: float = 0.0,
                       head_type: str | None = None) -> Catalog:
    """Write the live catalog for `variants` under `out_dir` and load it. function_cold: variant ->
    (cold, warm) ms of a real function call (measure_function_cold), measured once (the runtime
    import dominates, the same for every digits variant; see set_function_cold_start); None: the
    in-process load time. `head_type`: the head's instance type, whose rows are copied under
    head_catalog_type(head_type) for the head's standing VM."""
    os.makedirs(out_dir, exist_ok=True)
    wanted = list(dict.fromkeys(list(instance_types) + ([head_type] if head_type else [])))
    it_rows = [r for r in _read(base_dir, "instance_types.csv") if r["instance_type"] in wanted]
    missing = sorted(set(wanted) - {r["instance_type"] for r in it_rows})
    if missing:
        raise ValueError(f"serving.control.instance_types: {missing} not in {base_dir}/instance_types.csv")
    if boot_s is not None:
        for r in it_rows:
            r["boot_s_mean"], r["boot_s_std"] = str(boot_s), "0"
    vcpu = {r["instance_type"]: int(r["vcpu"]) for r in it_rows}
    if head_type:  # its rows are copied below, once every type's are in
        it_rows.append(dict(next(r for r in it_rows if r["instance_type"] == head_type),
                            instance_type=head_catalog_type(head_type)))

    measured = {name: _read(_MEASURED_DIR, name) for name in ("models.csv", "vm_latency.csv", "function_latency.csv")}
    base = {name: _read(base_dir, name) for name in ("models.csv", "vm_latency.csv", "function_latency.csv")}

    def rows_for(name: str, model: str) -> list[dict]:
        own = [r for r in measured[name] if r["model"] == model]
        return own if own else [r for r in base[name] if r["model"] == model]

    models, vm_rows, fn_rows = [], [], []
    for v in variants:
        if v.startswith("digits-"):
            ms, load_ms = measure(v)
            models.append({"model": v, "top1_accuracy_pct": 100.0 * accuracy[v], "top5_accuracy_pct": 100.0,
                           "param_mb": 1, "memory_footprint_mb": 64, "cold_start_ms": round(load_ms, 1),
                           "gflops_per_image": _DIGITS_GFLOPS, "source": "measured at start"})
            for t, n in vcpu.items():
                for b, lat in ms.items():
                    vm_rows.append({"model": v, "instance_type": t, "batch_size": b, "latency_ms": round(lat, 3),
                                    "max_concurrent_batches": n, "measured_concurrent_batches": n,
                                    "source": "measured at start; one batch per vCPU"})
            for mem in _MEMORY_GRID_MB:
                slow = max(1.0, MB_PER_VCPU / mem)
                for b, lat in ms.items():
                    fn_rows.append({"model": v, "memory_mb": mem, "batch_size": b,
                                    "latency_ms": round(lat * slow, 3), "source": "measured at start x CPU share"})
            continue
        m = rows_for("models.csv", v)
        if not m:
            continue  # not in any catalog: the policy cannot plan it (served from the head only)
        row = dict(m[0], top1_accuracy_pct=100.0 * accuracy.get(v, float(m[0]["top1_accuracy_pct"]) / 100))
        if not row.get("gflops_per_image"):  # the measured rows predate the column: the catalog's figure
            row["gflops_per_image"] = next((r.get("gflops_per_image") for r in base["models.csv"]
                                            if r["model"] == v and r.get("gflops_per_image")), "")
        models.append(row)
        vm_rows += [r for r in rows_for("vm_latency.csv", v) if r["instance_type"] in vcpu]
        fn_rows += rows_for("function_latency.csv", v)
    if head_type:
        vm_rows += [dict(r, instance_type=head_catalog_type(head_type)) for r in vm_rows
                    if r["instance_type"] == head_type]
    _write(out_dir, "instance_types.csv", ["instance_type", "vcpu", "memory_mb", "on_demand_usd_per_h",
                                           "spot_usd_per_h", "boot_s_mean", "boot_s_std"], it_rows)
    _write(out_dir, "models.csv", _MODEL_HEADER, models)
    _write(out_dir, "vm_latency.csv", _VM_HEADER, vm_rows)
    _write(out_dir, "function_latency.csv", ["model", "memory_mb", "batch_size", "latency_ms", "source"], fn_rows)
    digits = [v for v in variants if v.startswith("digits-")]
    if function_cold is None or not digits:
        return Catalog(out_dir)
    try:
        measured = function_cold(digits[0])
    except Exception as e:  # plan with the in-process load time rather than not start; say why
        log.warning("measuring a function cold start failed (%s: %s); using the load time", type(e).__name__, e)
        return Catalog(out_dir)
    return set_function_cold_start(Catalog(out_dir), measured, container_init_ms, digits[0])


def set_function_cold_start(catalog: Catalog, cold_warm_ms: tuple[float, float], container_init_ms: float,
                            measured_on: str) -> Catalog:
    """Every digits variant's `cold_start_ms` from one measured (cold, warm) function call, less
    `container_init_ms` (the simulator's cold call takes cold_start_ms + container_init_ms more
    than a warm one). In place; returns the catalog reloaded."""
    cold_ms, warm_ms = cold_warm_ms
    extra_ms = max(0.0, cold_ms - warm_ms - container_init_ms)
    rows = _read(catalog.directory, "models.csv")
    for r in rows:
        if r["model"].startswith("digits-"):
            r["cold_start_ms"] = round(extra_ms, 1)
            r["source"] = f"measured at start; cold start: a local function of {measured_on}"
    _write(catalog.directory, "models.csv", _MODEL_HEADER, rows)
    return Catalog(catalog.directory)


JITTER_FILE = "vm_latency_jitter.csv"


def measure_router_latency_ms(url: str, variants: list[str], catalog: Catalog, requests: int = 40,
                              warmup: int = 3, timeout_s: float = 30.0) -> dict[str, list[float]]:
    """Per variant: the times of one-sample requests through the HTTP proxy and the router, sent
    one at a time after `warmup` (what a client of this machine sees, stalls included); an
    ImageNet variant (~100 ms a forward pass) gets a quarter of `requests`."""
    import urllib.request

    from serving.oip import encode_infer_request
    from serving.runtimes import spec_of

    todo = [v for v in variants if v in catalog.model_index]
    bodies = {v: encode_infer_request({"input": np.zeros((1,) + tuple(spec_of(v).input_shape), np.float32)})
              for v in todo}
    out: dict[str, list[float]] = {v: [] for v in todo}
    heavy_n = max(5, requests // 4)
    for i in range(warmup + requests):
        for v in todo:  # round robin: a stall of the shared machine lands on every variant alike
            if not v.startswith("digits-") and i >= warmup + heavy_n:
                continue
            body, headers = bodies[v]
            req = urllib.request.Request(f"{url}/v2/models/{v}/infer", data=body, headers=headers, method="POST")
            t = time.perf_counter()
            with urllib.request.urlopen(req, timeout=timeout_s) as r:
                r.read()
            if i >= warmup:
                out[v].append((time.perf_counter() - t) * 1000.0)
    return out


def add_router_overhead(catalog: Catalog, samples_ms: dict[str, list[float]]) -> Catalog:
    """Per variant, add the median measured time beyond the batch-1 forward pass (the proxy and
    router hops) to its VM and function latency rows, in place in the catalog's directory, and
    write each sample's deviation from its variant's median to JITTER_FILE (the spread a
    simulator can draw from: `simulator.vm_latency_jitter_ms`). Returns the catalog reloaded."""
    overhead, jitter = {}, []
    for v, times in samples_ms.items():
        if not times:
            continue
        forward_ms = min(float(r["latency_ms"]) for r in _read(catalog.directory, "vm_latency.csv")
                         if r["model"] == v and int(r["batch_size"]) == 1)
        median = float(np.median(times))
        overhead[v] = max(0.0, median - forward_ms)
        jitter += [{"model": v, "deviation_ms": round(t - median, 3)} for t in times]
    for name, header in (("vm_latency.csv", _VM_HEADER),
                         ("function_latency.csv", ["model", "memory_mb", "batch_size", "latency_ms", "source"])):
        rows = _read(catalog.directory, name)
        for r in rows:
            extra = overhead.get(r["model"])
            if extra:
                r["latency_ms"] = round(float(r["latency_ms"]) + extra, 3)
                r["source"] += f"; + {extra:.1f} ms proxy and router (measured at start)"
        _write(catalog.directory, name, header, rows)
    _write(catalog.directory, JITTER_FILE, ["model", "deviation_ms"], jitter)
    return Catalog(catalog.directory)


def measure_vm_path_ms(variants: list[str], catalog: Catalog, settings, requests: int = 20,
                       warmup: int = 3, timeout_s: float = 30.0) -> dict[str, list[float]]:
    """Per variant: the times of one-sample calls from the head to a `PathProbe` replica (a
    procured VM's path without its forward pass), sent one at a time after `warmup`. Deploys the
    probe as its own Serve application and deletes it after. Needs Serve running."""
    from ray import serve

    from serving.deployments import path_probe_app
    from serving.runtimes import spec_of

    todo = [v for v in variants if v in catalog.model_index]
    out: dict[str, list[float]] = {v: [] for v in todo}
    handle = serve.run(path_probe_app(settings), name="path-probe", route_prefix=None)
    try:
        for v in todo:
            spec, opts = spec_of(v), settings.options_for(v)
            x = np.zeros((1,) + tuple(spec.input_shape), np.float32)
            for i in range(warmup + requests):
                t = time.perf_counter()
                handle.infer.remote(x, opts.max_batch_size, opts.batch_wait_timeout_s,
                                    spec.num_classes).result(timeout_s=timeout_s)
                if i >= warmup:
                    out[v].append((time.perf_counter() - t) * 1000.0)
    finally:
        serve.delete("path-probe")
    return out


def add_vm_path_overhead(catalog: Catalog, samples_ms: dict[str, list[float]]) -> Catalog:
    """Per variant, add the median of `samples_ms` (measure_vm_path_ms) to its VM latency rows of
    every instance type but the head's (head_catalog_type), in place. Returns the catalog reloaded."""
    extra = {v: float(np.median(t)) for v, t in samples_ms.items() if t}
    rows = _read(catalog.directory, "vm_latency.csv")
    for r in rows:
        add = extra.get(r["model"])
        if add and not r["instance_type"].endswith(HEAD_SUFFIX):
            r["latency_ms"] = round(float(r["latency_ms"]) + add, 3)
            r["source"] += f"; + {add:.1f} ms a procured VM's path (measured at start)"
    _write(catalog.directory, "vm_latency.csv", _VM_HEADER, rows)
    return Catalog(catalog.directory)


def read_latency_jitter_ms(directory: str) -> list[float]:
    """The deviations add_router_overhead wrote (empty when it did not run)."""
    return [float(r["deviation_ms"]) for r in _read(directory, JITTER_FILE)]
