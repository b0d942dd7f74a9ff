"""Ray Serve deployments of the live system: model replicas (the "VM" backend) and the router.

`ModelServer`: one model variant, batched with `@serve.batch` (size and wait from the serving
config). Variants with `min_replicas: 0` start at zero replicas and scale up on first use, so
the heavy ImageNet models load lazily.

`Router`: the HTTP ingress (FastAPI). It speaks the Open Inference Protocol REST (KServe v2):
health, server and model metadata, model ready, infer; plus hybridserve's own endpoints:
POST /feedback, GET /status, GET /apps, GET /metrics. Per infer: resolve the name (app or
variant), parse the body (serving.oip), let the app's selector pick the variant
(serving.router.RouterCore), send the batch to the variant's deployment, or spill it to a local
function (procurement.providers.local) when the deployment's queue is too long for the SLO.

`build_app(apps, accuracy, settings)` binds it all into one Serve application.
"""
import asyncio
import logging
import threading
import time
import uuid

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from ray import serve

from serving import oip
from serving.router import App, NoModel, RouterCore, UnknownName, _plain
from serving.runtimes import spec_of
from serving.settings import ServingConfig

log = logging.getLogger("hybridserve.router")
VERSION = "0.1.0"


def labels_of(variant: str) -> tuple[str, ...]:
    """Class labels of a variant without loading it (the router never loads models)."""
    if spec_of(variant).family == "digits":
        from serving import digits
        return digits.LABELS
    from serving.runtimes import imagenet_labels
    return imagenet_labels()


@serve.deployment
class ModelServer:
    """One model variant on a Serve replica; requests are batched across callers."""

    def __init__(self, variant: str, runtime: str, max_batch_size: int, batch_wait_timeout_s: float,
                 lazy: bool):
        from serving.runtimes import load_model

        self.variant = variant
        self.model = load_model(variant, runtime=runtime)
        self.infer.set_max_batch_size(max_batch_size)
        self.infer.set_batch_wait_timeout_s(batch_wait_timeout_s)
        # A replica started on demand (scale from zero) makes its first batch a cold start.
        self._cold_pending = lazy

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def infer(self, batches: list[np.ndarray]) -> list[tuple[np.ndarray, float, bool]]:
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


app = FastAPI(title="hybridserve", version=VERSION,
              description="Open Inference Protocol (KServe v2 REST) plus hybridserve's feedback and status")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


@serve.deployment
@serve.ingress(app)
class Router:
    def __init__(self, apps: list[dict], accuracy: dict[str, float], settings: dict, handles: dict):
        from procurement.providers.local import LocalFunctionProvider
        from serving.metrics import RouterMetrics

        self.settings = ServingConfig.model_validate(settings)
        self.core = RouterCore([App(**a) for a in apps], accuracy, self.settings)
        self.handles = handles
        self.metrics = RouterMetrics()
        self.started_s = time.time()
        f = self.settings.functions
        self.functions = LocalFunctionProvider(keep_alive_s=f.keep_alive_s, concurrency_limit=f.concurrency_limit)
        for v in self.core.variants:
            self.functions.deploy(v, f.memory_mb)
            self.metrics.function_memory_mb.labels(v).set(f.memory_mb)
        self._stop = threading.Event()
        threading.Thread(target=self._reaper, name="function-reaper", daemon=True).start()

    def _reaper(self) -> None:
        while not self._stop.wait(5.0):
            self.functions.reap()

    def __del__(self):  # Serve calls it when the replica shuts down
        self._stop.set()
        self.functions.close()

    # --- Open Inference Protocol: health and metadata ------------------------------------------
    @app.get("/v2/health/live")
    def live(self):
        return oip.health(live=True)

    @app.get("/v2/health/ready")
    def ready(self):
        return oip.health(ready=True)

    @app.get("/v2")
    def server_metadata(self):
        return oip.server_metadata("hybridserve", VERSION)

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    def model_metadata(self, name: str, version: str | None = None):
        try:
            a, variant = self.core.resolve(name)
        except UnknownName as e:
            return _error(404, str(e))
        if a is None:
            spec = spec_of(variant)
            return oip.model_metadata(name, spec.input_shape, spec.num_classes,
                                      platform=self.settings.options_for(variant).runtime,
                                      parameters={"kind": "variant", "accuracy": self.core.accuracy.get(variant)})
        spec = spec_of(a.variants[0])
        return oip.model_metadata(name, spec.input_shape, spec.num_classes, platform="hybridserve",
                                  parameters={"kind": "app", "slo_ms": a.slo_ms, "min_accuracy": a.min_accuracy,
                                              "variants": list(a.variants)})

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    def model_ready(self, name: str, version: str | None = None):
        try:
            self.core.resolve(name)
        except UnknownName as e:
            return _error(404, str(e))
        return oip.health(ready=True)

    # --- infer ---------------------------------------------------------------------------------
    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(self, name: str, request: Request, version: str | None = None):
        t0 = time.perf_counter()
        app_label, model_label, backend = name, "", "none"
        try:
            a, variant = self.core.resolve(name)
            app_label = a.name if a else ""
            limit = int(self.settings.max_body_mb * 1024 * 1024)
            declared = request.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                return self._client_error(413, f"body: {int(declared)} bytes exceed the limit of {limit}",
                                          app_label, model_label)
            body = await request.body()
            if len(body) > limit:
                return self._client_error(413, f"body: {len(body)} bytes exceed the limit of {limit}",
                                          app_label, model_label)
            req = oip.parse_infer_request(body, request.headers.get(oip.HEADER_LENGTH),
                                          output_names=oip.CLASSIFICATION_OUTPUTS)
            if variant is None:
                variant = self._choose(a, req)
            model_label = variant
            batch = oip.batch_from_request(req, spec_of(variant).input_shape, self.settings.max_samples_per_request)
            slo_ms = req.slo_ms or (a.slo_ms if a else float("inf"))
            probs, backend, cold = await self._run(variant, batch, slo_ms)
        except oip.InvalidInput as e:
            return self._client_error(400, str(e), app_label, model_label)
        except UnknownName as e:
            return self._client_error(404, str(e), app_label, model_label)
        except NoModel as e:
            return self._client_error(422, str(e), app_label, model_label)
        except _BackendError as e:
            self.metrics.requests.labels(app_label, model_label, backend, "server_error").inc()
            return _error(503, str(e))
        latency_ms = (time.perf_counter() - t0) * 1000.0
        request_id = req.id or uuid.uuid4().hex
        req.id = request_id
        met = self.core.finish(request_id, a, variant, int(np.argmax(probs[0])), latency_ms, slo_ms, time.time())
        params = {"variant": variant, "backend": backend, "latency_ms": round(latency_ms, 3), "cold_start": cold,
                  "slo_met": met}
        if a is not None:
            params.update(app=a.name, slo_ms=slo_ms)
        resp = oip.classification_response(req, name, probs, labels_of(variant), parameters=params)
        body, headers = oip.encode_infer_response(resp)
        m = self.metrics
        m.requests.labels(app_label, variant, backend, "ok").inc()
        m.latency_ms.labels(app_label, variant, backend).observe(latency_ms)
        if not met:
            m.slo_violations.labels(app_label, variant, backend).inc()
        if cold and backend == "function":
            m.cold_starts.labels(variant).inc()
        return Response(content=body, headers=headers, media_type=headers.get("Content-Type"))

    def _client_error(self, status: int, message: str, app_label: str, model_label: str) -> JSONResponse:
        self.metrics.requests.labels(app_label, model_label, "none", "client_error").inc()
        return _error(status, message)

    def _choose(self, a: App, req) -> str:
        variant = self.core.choose(a, req.min_accuracy)
        tensor = req.inputs[0] if len(req.inputs) == 1 else None
        if tensor is None or tensor.datatype == "BYTES":
            return variant  # images are resized to whichever variant is picked
        # Pixels fit only variants of that input shape (inception takes 299×299, the rest 224×224).
        shape = tuple(tensor.shape[-3:])
        if tuple(spec_of(variant).input_shape) == shape:
            return variant
        fits = [v for v in a.variants if tuple(spec_of(v).input_shape) == shape]
        if not fits:
            raise oip.InvalidInput("inputs[0].shape", f"no variant of {a.name!r} takes samples of shape "
                                                      f"{list(shape)}")
        return fits[0]

    async def _run(self, variant: str, batch: np.ndarray, slo_ms: float) -> tuple[np.ndarray, str, bool]:
        """(probabilities, backend, cold start): the VM deployment, or a function when it is too busy."""
        if self.core.should_spill(variant, slo_ms) and self._function_faster(variant):
            f = self.settings.functions
            res = await asyncio.to_thread(self.functions.invoke, variant, batch, f.timeout_s)
            if res.ok:
                self._function_gauges(variant)
                return res.payload, "function", res.cold_start
            if not (res.error or "").startswith("throttled"):
                raise _BackendError(f"function {variant}: {res.error}")
            # Throttled: queue at the VM deployment instead.
        self.core.vm_started(variant)
        self.metrics.vm_inflight.labels(variant).set(self.core.inflight_vm[variant])
        batch_ms = None
        try:
            probs, batch_ms, cold = await self.handles[variant].infer.remote(batch)
        except Exception as e:  # a replica died or the deployment is unhealthy
            raise _BackendError(f"model {variant}: {type(e).__name__}: {e}") from None
        finally:
            self.core.vm_finished(variant, batch_ms)
            self.metrics.vm_inflight.labels(variant).set(self.core.inflight_vm[variant])
        return probs, "vm", cold

    def _function_faster(self, variant: str) -> bool:
        """Spill only where it helps: a warm instance is free, or a cold start (as measured so
        far; unknown before the first) is shorter than the expected wait at the VM deployment."""
        if self.functions.has_idle(variant):
            return True
        cold_ms = self.functions.cold_start_ms(variant)
        return cold_ms is None or cold_ms < self.core.expected_vm_ms(variant)

    def _function_gauges(self, variant: str) -> None:
        st = self.functions.stats().get(variant, {})
        self.metrics.function_instances.labels(variant).set(st.get("instances", 0))

    # --- hybridserve's own endpoints -----------------------------------------------------------
    @app.post("/feedback")
    async def feedback(self, request: Request):
        """Body {"id": "<request id>", "label": <class id or label>}: the true class of a served request."""
        try:
            doc = await request.json()
        except ValueError:
            return _error(400, "body: not valid JSON")
        if not isinstance(doc, dict):
            return _error(400, "body: must be a JSON object")
        rid, label = doc.get("id"), doc.get("label")
        if not isinstance(rid, str) or not rid:
            return _error(400, "id: must be the non-empty id of a served request")
        if isinstance(label, bool) or not isinstance(label, (int, str)):
            return _error(400, "label: must be a class id (integer) or a label (string)")
        pending = self.core._pending.get(rid)
        if pending is None:
            return _error(404, f"id: no request {rid!r} awaiting feedback (unknown, sent to a variant, "
                               f"already labelled or older than {self.settings.feedback_window_s:g} s)")
        labels = labels_of(pending.variant)
        if isinstance(label, str):
            if label not in labels:
                return _error(400, f"label: {label!r} is not a label of {pending.variant}")
            label = labels.index(label)
        elif not 0 <= label < len(labels):
            return _error(400, f"label: class id {label} is outside [0, {len(labels) - 1}]")
        correct = self.core.feedback(rid, label)
        self.metrics.feedback.labels(pending.app, pending.variant, str(correct).lower()).inc()
        return {"id": rid, "variant": pending.variant, "correct": correct}

    @app.get("/apps")
    def apps(self):
        return {"apps": [{"name": a.name, "slo_ms": a.slo_ms, "min_accuracy": a.min_accuracy,
                          "variants": list(a.variants)} for a in self.core.apps.values()],
                "variants": [{"name": v, "accuracy": self.core.accuracy.get(v),
                              "input_shape": list(spec_of(v).input_shape),
                              "min_replicas": self.settings.options_for(v).min_replicas}
                             for v in self.core.variants]}

    @app.get("/status")
    def status(self):
        self.core.flush(time.time())
        return _plain({"uptime_s": round(time.time() - self.started_s, 1), **self.core.summary(),
                       "functions": self.functions.stats()})

    @app.get("/metrics")
    def prometheus(self):
        body, content_type = self.metrics.exposition()
        return Response(content=body, media_type=content_type)


class _BackendError(Exception):
    pass


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
        ray_actor_options={"num_cpus": opts.num_cpus}, **scaling,
    ).bind(variant, opts.runtime, opts.max_batch_size, opts.batch_wait_timeout_s, lazy)


def build_app(apps: list[App], accuracy: dict[str, float], settings: ServingConfig):
    """The Serve application: the router bound to one ModelServer deployment per variant."""
    variants = sorted({v for a in apps for v in a.variants})
    handles = {v: model_deployment(v, settings) for v in variants}
    return Router.options(name="router", max_ongoing_requests=settings.router_max_ongoing_requests,
                          ray_actor_options={"num_cpus": 0}).bind(
        [dict(name=a.name, slo_ms=a.slo_ms, min_accuracy=a.min_accuracy, variants=list(a.variants)) for a in apps],
        accuracy, settings.model_dump(), handles)
