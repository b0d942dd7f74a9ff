"""`hybridserve run`: the live system on this machine.

Steps, in order:
1. validate the config and its `serving:` section; resolve the served apps and their variants;
2. make sure the digits variants are trained (cached under HYBRIDSERVE_CACHE), so their
   measured accuracy is the selector's prior and replicas start without training;
3. start a fresh local Ray head (`address="local"`: never attach to a stale cluster), then Ray
   Serve with HTTP on `http_host:http_port`, and deploy the router and model deployments;
4. print the endpoint and wait for SIGINT / SIGTERM;
5. shut down Serve (replicas stop their local function instances) and Ray; nothing is left.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

from controller.config import Config
from serving.settings import ServingConfig

log = logging.getLogger("hybridserve.daemon")

APP_NAME = "hybridserve"


def prepare(cfg: Config, settings: ServingConfig):
    """(apps, accuracy per variant): steps 1-2 (trains digits variants on first use)."""
    from controller.catalog import load_catalog
    from serving.router import served_apps, variant_accuracy

    catalog = load_catalog(cfg.catalog.dir)
    apps = served_apps(cfg, settings, catalog)
    if not apps:
        raise ValueError("no app to serve: set serving.apps or serving.serve_config_apps: true")
    variants = sorted({v for a in apps for v in a.variants})
    accuracy = variant_accuracy(variants, catalog)
    # Build the router's decision core once here: a bad selector name or params, or a floor no
    # variant meets, fails now with one line instead of inside a Serve replica.
    from selector import NoFeasibleModel
    from serving.router import RouterCore
    try:
        RouterCore(apps, accuracy, settings)
    except NoFeasibleModel as e:
        raise ValueError(str(e)) from None
    return apps, accuracy


def _worker_env() -> dict[str, str]:
    """Environment of every Ray worker: one math thread per replica (2 cores shared), same cache."""
    from serving.runtimes import cache_dir

    env = {"OMP_NUM_THREADS": "1", "MXNET_CPU_WORKER_NTHREADS": "1", "HYBRIDSERVE_CACHE": cache_dir(),
           "MXNET_ENGINE_TYPE": os.environ.get("MXNET_ENGINE_TYPE", "ThreadedEnginePerDevice")}
    return env


def start(cfg: Config, settings: ServingConfig, out=sys.stdout, on_ray_started=None) -> str:
    """Steps 1-3; returns the base URL. The caller must call `stop()`.

    on_ray_started: called right after `ray.init` (which installs Ray's own SIGTERM handler, one
    that kills the driver without stopping Serve); `run` re-installs its handlers there."""
    import ray
    from ray import serve

    from serving.deployments import build_app

    t0 = time.perf_counter()
    apps, accuracy = prepare(cfg, settings)
    print(f"hybridserve: apps {', '.join(a.name for a in apps)}; variants "
          f"{', '.join(f'{v} ({acc:.3f})' for v, acc in sorted(accuracy.items()))}", file=out, flush=True)
    ray.init(address="local", num_cpus=settings.ray_num_cpus, include_dashboard=False,
             runtime_env={"env_vars": _worker_env()}, logging_level=logging.WARNING, log_to_driver=False,
             configure_logging=True)
    if on_ray_started is not None:
        on_ray_started()
    serve.start(http_options={"host": settings.http_host, "port": settings.http_port},
                logging_config={"log_level": "WARNING"})
    serve.run(build_app(apps, accuracy, settings), name=APP_NAME, route_prefix="/")
    url = f"http://{settings.http_host}:{settings.http_port}"
    print(f"hybridserve: serving the Open Inference Protocol on {url}/v2 "
          f"(ready in {time.perf_counter() - t0:.1f} s; Ctrl-C to stop)", file=out, flush=True)
    return url


def stop(out=sys.stdout) -> None:
    import ray
    from ray import serve

    try:
        if ray.is_initialized():
            serve.shutdown()
    finally:
        ray.shutdown()
    print("hybridserve: stopped", file=out, flush=True)


def run(cfg: Config, settings: ServingConfig) -> int:
    """Start, serve until SIGINT / SIGTERM, stop. Returns the exit code."""
    stopping = threading.Event()

    def on_signal(signum, frame):
        stopping.set()

    def install():
        return {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    old = install()
    try:
        start(cfg, settings, on_ray_started=install)
        if stopping.is_set():
            print("hybridserve: stop requested while starting", flush=True)
        while not stopping.wait(0.5):
            pass
        return 0
    finally:
        # A second Ctrl-C during shutdown should not leave Ray behind: ignore it until done.
        for s in old:
            signal.signal(s, signal.SIG_IGN)
        stop()
        for s, h in old.items():
            signal.signal(s, h)
