"""`hybridserve run`: the live system on this machine.

Steps, in order:
1. validate the config and its `serving:` section; resolve the served apps and their variants;
2. make sure the digits variants are trained (cached under HYBRIDSERVE_CACHE), so their
   measured accuracy is the selector's prior and replicas start without training;
3. write the live catalog the policy plans with (controller.live.live_catalog: the served
   variants on the local instance types and the head's (`serving.head_instance_type`); digits variants
   measured now, their function cold start on a real local function instance);
4. start a fresh local Ray head (`address="local"`: never attach to a stale cluster), then Ray
   Serve with HTTP on `http_host:http_port` and KServe v2 gRPC on `grpc_port` (proxy on the head
   only: a VM's node must not start a second proxy on the same ports), and deploy the router and
   model deployments;
5. time requests through the proxy and router into the live catalog (measured end to end, so the
   policy and a simulator fed this catalog see this machine's service time), and a procured
   VM's longer path (a probe replica: the Serve handle hop and the batch wait), then start the
   control loop (controller.live.control_loop; the head counts as a standing VM) with the
   config's VM provider (controller.live.vm_fleet: a LocalVmProvider joined to this head, or with `provider.name: aws` an AwsVmProvider whose
   instances join the head at `provider.vm.ray_head_address`); the loop adopts the fleet left
   by an earlier start;
6. print the endpoints and wait for SIGINT / SIGTERM;
7. stop the loop and release the fleet (drain, delete the VM apps, stop their nodes; an aws fleet
   is left running for the next start to adopt unless `serving.control.release_on_exit`), shut down
   Serve (the router stops its local function instances) and Ray; nothing is left.
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
# How long the control loop's start waits, once Serve is up, for the function cold start being
# measured since before Ray started; past it the catalog keeps the in-process load time.
_COLD_WAIT_S = 60.0
_loop = None  # the running ControlLoop (stop() releases its fleet)


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
    from serving.security import check_settings
    check_settings(settings, [a.name for a in apps])
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
    """Steps 1-5; returns the base URL. The caller must call `stop()`.

    on_ray_started: called right after `ray.init` (which installs Ray's own SIGTERM handler, one
    that kills the driver without stopping Serve); `run` re-installs its handlers there."""
    global _loop
    import tempfile

    import ray
    from ray import serve
    from ray.serve.config import gRPCOptions

    from serving.deployments import build_app

    t0 = time.perf_counter()
    from serving.security import install_redaction
    install_redaction()  # secrets in the environment never reach a log line (serving.security)
    # Serve's gRPC proxy accepts 2 GiB messages by default and buffers them before the router
    # sees them: cap it near the router's own limit (which answers a clean RESOURCE_EXHAUSTED).
    os.environ.setdefault("RAY_SERVE_GRPC_MAX_MESSAGE_SIZE", str(int(settings.max_body_mb * 1024 * 1024) + 65536))
    from controller.live.vm_fleet import build_vm_provider, fleet_settings
    settings = fleet_settings(cfg, settings)  # aws: the fleet's instance types and cap
    apps, accuracy = prepare(cfg, settings)
    print(f"hybridserve: apps {', '.join(a.name for a in apps)}; variants "
          f"{', '.join(f'{v} ({acc:.3f})' for v, acc in sorted(accuracy.items()))}", file=out, flush=True)
    catalog = cold_future = None
    if settings.control.enabled:
        from concurrent.futures import ThreadPoolExecutor

        from controller.live.live_catalog import build_live_catalog, measure_function_cold
        catalog = build_live_catalog(cfg.catalog.dir, tempfile.mkdtemp(prefix="hybridserve-catalog-"),
                                     sorted(accuracy), accuracy, list(settings.control.instance_types),
                                     settings.control.vm_boot_s, head_type=settings.head_instance_type)
        # A real function cold start (seconds: interpreter, mxnet import under the CPU quota),
        # timed while Ray and Serve start rather than before.
        first_digits = next((v for v in sorted(accuracy) if v.startswith("digits-")), None)
        if settings.functions.enabled and first_digits:
            cold_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cold-start")
            cold_future = cold_pool.submit(measure_function_cold, first_digits, settings.functions.memory_mb)
            cold_pool.shutdown(wait=False)
    ctx = ray.init(address="local", num_cpus=settings.ray_num_cpus, include_dashboard=False,
                   runtime_env={"env_vars": _worker_env()}, logging_level=logging.WARNING, log_to_driver=False,
                   configure_logging=True)
    if on_ray_started is not None:
        on_ray_started()
    grpc = None
    if settings.grpc_port:
        from serving.grpc_v2 import SERVICER_FUNCTION
        grpc = gRPCOptions(port=settings.grpc_port, grpc_servicer_functions=[SERVICER_FUNCTION])
    serve.start(http_options={"host": settings.http_host, "port": settings.http_port}, grpc_options=grpc,
                proxy_location="HeadOnly", logging_config={"log_level": "WARNING"})
    # The config's provider picks the router's function backend too (local workers or Lambda).
    serve.run(build_app(apps, accuracy, settings, provider=dict(cfg.provider) or None), name=APP_NAME,
              route_prefix="/")
    url = f"http://{settings.http_host}:{settings.http_port}"
    if catalog is not None:
        from controller.live.control_loop import ControlLoop
        from controller.live.live_catalog import (add_router_overhead, add_vm_path_overhead,
                                                  measure_router_latency_ms, measure_vm_path_ms,
                                                  set_function_cold_start)

        if cold_future is not None:  # first: its process must not share the CPU with the timing below
            try:
                catalog = set_function_cold_start(catalog, cold_future.result(timeout=_COLD_WAIT_S),
                                                  cfg.functions.container_init_ms, first_digits)
            except Exception as e:  # plan with the in-process load time; say why
                log.warning("measuring a function cold start failed (%s: %s); the catalog has the load time",
                            type(e).__name__, e)
        try:
            catalog = add_router_overhead(catalog, measure_router_latency_ms(url, sorted(accuracy), catalog))
        except Exception as e:  # plan with the bare forward pass rather than not at all; say why
            log.warning("measuring the router overhead failed (%s: %s); the catalog has the forward pass only",
                        type(e).__name__, e)
        try:
            catalog = add_vm_path_overhead(catalog, measure_vm_path_ms(sorted(accuracy), catalog, settings))
        except Exception as e:  # plan procured VMs with the head's path rather than not at all; say why
            log.warning("measuring a procured VM's path failed (%s: %s); its rows have the head's path",
                        type(e).__name__, e)

        try:
            vms, release_on_exit = build_vm_provider(cfg, settings, catalog, ctx.address_info["gcs_address"])
            _loop = ControlLoop(cfg, settings, apps, catalog, serve.get_deployment_handle("router", APP_NAME), vms,
                                seed=settings.seed, release_on_exit=release_on_exit)
            _loop.start()
        except Exception as e:  # serve without a loop rather than not at all; say why
            log.exception("control loop not started")
            print(f"hybridserve: control loop NOT started ({type(e).__name__}: {e}); serving the static fleet",
                  file=out, flush=True)
            _loop = None
    grpc_msg = f", gRPC on {settings.http_host}:{settings.grpc_port}" if settings.grpc_port else ""
    loop_msg = (f"; control loop: {settings.control.policy} every <= {_loop.interval_s:g} s, "
                f"up to {settings.control.max_vms} VMs of {', '.join(settings.control.instance_types)}"
                if _loop else "; control loop off")
    print(f"hybridserve: serving the Open Inference Protocol on {url}/v2{grpc_msg}{loop_msg} "
          f"(ready in {time.perf_counter() - t0:.1f} s; Ctrl-C to stop)", file=out, flush=True)
    return url


def stop(out=sys.stdout) -> None:
    global _loop
    import ray
    from ray import serve

    try:
        if _loop is not None:
            loop, _loop = _loop, None
            try:
                kept = loop.stop()  # releases the fleet (if release_on_exit) while Serve and Ray are up
                cost = loop.cost_usd(time.time())
                fleet = (f"left {len(kept)} VM(s) running for the next start to adopt ({', '.join(kept)})"
                         if kept else "fleet released")
                print(f"hybridserve: {fleet}; cost so far {cost['total']:.6f} USD "
                      f"(VMs {cost['vm']:.6f}, functions {cost['function']:.6f})", file=out, flush=True)
                import shutil
                shutil.rmtree(loop.catalog.directory, ignore_errors=True)
            except Exception as e:
                print(f"hybridserve: stopping the control loop: {e}", file=out, flush=True)
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
