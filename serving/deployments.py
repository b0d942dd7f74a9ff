"""Ray Serve deployments of the live system: model replicas (the "VM" backend) and the app.

`ModelServer`: one model variant, batched with `@serve.batch` (size and wait from the serving
config). Variants with `min_replicas: 0` start at zero replicas and scale up on first use, so
the heavy ImageNet models load lazily.

`build_app(apps, accuracy, settings)` binds the router (serving.router_app.Router, REST + gRPC
ingress) into one Serve application; the head's replicas of each variant run inside the router
(`head_in_process`, the default: serving.local_models) or, with it off, as one ModelServer
deployment per variant on the Ray head. `vm_app(variant, vm_id, replicas, settings)` is the
Serve application the control loop deploys on a procured VM: the variant's ModelServer pinned
to that Ray node through its vm-id custom resource. `path_probe_app(settings)` is a short-lived
`PathProbe` the daemon times at start (controller.live.live_catalog.measure_vm_path_ms): a procured VM's
request path without the forward pass.
"""
import asyncio
import time

import numpy as np
from ray import serve

from serving.router import App
from serving.router_app import VERSION, Router, labels_of  # noqa: F401  (re-exported)
from serving.settings import ServingConfig

# No access log line per request (py-spy: ~1.5 % of the router replica's CPU); warnings and
# errors still go to the replica's log.
_NO_ACCESS_LOG = {"enable_access_log": False}


@serve.deployment
class ModelServer:
    """One model variant on a Serve replica; requests are batched across callers."""

    def __init__(self, variant: str, runtime: str, max_batch_size: int, batch_wait_timeout_s: float,
                 lazy: bool):
        from serving.runtimes import load_model

        self.variant = variant
        self.model = load_model(variant, runtime=runtime)
        self._batch_size = max_batch_size
        self._infer_batch.set_max_batch_size(max_batch_size)
        self._infer_batch.set_batch_wait_timeout_s(batch_wait_timeout_s)
        # A replica started on demand (scale from zero) makes its first batch a cold start.
        self._cold_pending = lazy

    async def infer(self, batch: np.ndarray, batch_size: int | None = None) -> tuple[np.ndarray, float, bool]:
        """One caller's N×C×H×W batch -> (probabilities, batch compute ms, cold start).
        `batch_size`: the plan's (Route.vm_batch_size), applied before this request queues, so
        every replica batches as planned from its next request on."""
        if batch_size is not None and int(batch_size) >= 1 and int(batch_size) != self._batch_size:
            self._batch_size = int(batch_size)
            self._infer_batch.set_max_batch_size(self._batch_size)
        return await self._infer_batch(batch)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def _infer_batch(self, batches: list[np.ndarray]) -> list[tuple[np.ndarray, float, bool]]:
        """Each caller sends an N_i×C×H×W batch; one forward pass runs them all.

        Returns per caller (probabilities N_i×classes, batch compute ms, cold start)."""
        sizes = [len(b) for b in batches]
        x = np.concatenate(batches, axis=0)
        t0 = time.perf_counter()
        probs = await asyncio.to_thread(self.model.predict, x)
        batch_ms = (time.perf_counter() - t0) * 1000.0
        cold, self._cold_pending = self._cold_pending, False
        out, start = [], 0
        for n in sizes:
            out.append((probs[start:start + n], batch_ms, cold))
            start += n
        return out


@serve.deployment
class PathProbe:
    """A ModelServer without a model: the same handle call, the same `@serve.batch` (size and wait
    set per call to the variant's), and an answer of the variant's shape, so timing it from the
    head gives what a procured VM's replica adds to a request beyond its forward pass (the tensor
    to another process and back, Serve's routing, a lone request's batch wait)."""

    async def infer(self, batch: np.ndarray, batch_size: int, wait_s: float,
                    num_classes: int) -> tuple[np.ndarray, float, bool]:
        self._infer_batch.set_max_batch_size(int(batch_size))
        self._infer_batch.set_batch_wait_timeout_s(float(wait_s))
        probs = await self._infer_batch(batch)
        return np.zeros((len(probs), int(num_classes)), np.float32), 0.0, False

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def _infer_batch(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        return batches


def path_probe_app(settings: ServingConfig):
    """One PathProbe replica on the head (no CPU reserved: it computes nothing)."""
    return PathProbe.options(name="path-probe", num_replicas=1, max_ongoing_requests=16,
                             logging_config=_NO_ACCESS_LOG, ray_actor_options={"num_cpus": 0}).bind()


def model_deployment(variant: str, settings: ServingConfig):
    """The bound ModelServer of one variant, with its replica and batching options."""
    opts = settings.options_for(variant)
    lazy = opts.min_replicas == 0
    scaling = {}
    if lazy or opts.max_replicas > opts.min_replicas:
        scaling["autoscaling_config"] = {
            "min_replicas": opts.min_replicas, "max_replicas": opts.max_replicas,
            "initial_replicas": opts.min_replicas, "target_ongoing_requests": opts.max_batch_size,
            "upscale_delay_s": 0.0, "downscale_delay_s": settings.functions.keep_alive_s}
    else:
        scaling["num_replicas"] = opts.min_replicas
    return ModelServer.options(
        name=f"model-{variant}", max_ongoing_requests=max(2 * opts.max_batch_size, 16),
        logging_config=_NO_ACCESS_LOG, ray_actor_options={"num_cpus": opts.num_cpus}, **scaling,
    ).bind(variant, opts.runtime, opts.max_batch_size, opts.batch_wait_timeout_s, lazy)


def vm_app(variant: str, vm_id: str, replicas: int, settings: ServingConfig):
    """The variant's ModelServer with `replicas` replicas on the Ray node of `vm_id` (its custom
    resource; each replica takes 1 / replicas of it, so all fit on that node and nowhere else)."""
    opts = settings.options_for(variant)
    return ModelServer.options(
        name=f"model-{variant}", num_replicas=replicas, max_ongoing_requests=max(2 * opts.max_batch_size, 16),
        logging_config=_NO_ACCESS_LOG,
        ray_actor_options={"num_cpus": 0, "resources": {vm_id: 1.0 / replicas}},
    ).bind(variant, opts.runtime, opts.max_batch_size, opts.batch_wait_timeout_s, False)


def build_app(apps: list[App], accuracy: dict[str, float], settings: ServingConfig, provider: dict | None = None):
    """The Serve application: the router, bound to one ModelServer deployment per variant unless
    the router runs the head's models itself (`head_in_process`, serving.local_models). `provider`
    (the config's `provider:` section) picks the router's function backend (serving.function_fleet)."""
    variants = sorted({v for a in apps for v in a.variants})
    handles = {} if settings.head_in_process else {v: model_deployment(v, settings) for v in variants}
    return Router.options(name="router", max_ongoing_requests=settings.router_max_ongoing_requests,
                          logging_config=_NO_ACCESS_LOG,
                          ray_actor_options={"num_cpus": 0}).bind(
        [dict(name=a.name, slo_ms=a.slo_ms, min_accuracy=a.min_accuracy, variants=list(a.variants)) for a in apps],
        accuracy, settings.model_dump(), handles, provider)
