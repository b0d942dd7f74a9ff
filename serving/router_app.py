"""The router: the Serve ingress speaking the Open Inference Protocol over REST and gRPC.

REST (FastAPI): health, server and model metadata, model ready, infer (JSON or the binary tensor
extension); hybridserve's own POST /feedback (one label or a list), GET /status, /apps,
/metrics. gRPC (KServe v2 / Triton `inference.GRPCInferenceService`, through Serve's gRPC
proxy): ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelInfer, each
the method of the same name (serving.router_grpc); errors carry the matching status code.

Per infer (`_infer`, shared by both protocols): resolve the name (app or variant), let the
app's selector pick the variant (serving.router.RouterCore), then send the batch to a VM
target of that variant (the routing table's pick: the head's replicas, run in this process by default
(serving.local_models), or a procured VM's deployment through its handle) or
spill it to a function (local or Lambda: serving/function_fleet.py) when the VM queue is too long for the SLO or the planned budget.

The control loop in the daemon talks to this replica through two methods: `collect(now_s)`
(what was measured since the last tick) and `apply_control(update)` (routes, function memory
and warm pool, the VM targets, cost per request, and the status shown by /status and /metrics).
"""
import itertools
import logging
import math
import threading
import time
import uuid

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from ray import serve

from serving import oip, security
from serving.router import VERSION, App, NoModel, RequestFailure, RouterCore, UnknownName, _plain
from serving.router_control import HEAD, ControlSideDoor
from serving.router_grpc import GrpcV2Methods
from serving.runtimes import spec_of
from serving.settings import ServingConfig
from serving.telemetry import IntervalStats

log = logging.getLogger("hybridserve.router")

app = FastAPI(title="hybridserve", version=VERSION,
              description="Open Inference Protocol (KServe v2 REST) plus hybridserve's feedback and status")


def labels_of(variant: str) -> tuple[str, ...]:
    """Class labels of a variant without loading it (the router never loads models)."""
    if spec_of(variant).family == "digits":
        from serving import digits
        return digits.LABELS
    from serving.runtimes import imagenet_labels
    return imagenet_labels()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class _BackendError(Exception):
    pass


@serve.deployment
@serve.ingress(app)
class Router(ControlSideDoor, GrpcV2Methods):
    def __init__(self, apps: list[dict], accuracy: dict[str, float], settings: dict, handles: dict,
                 provider: dict | None = None):
        from controller.config import FunctionPlatformConfig
        from serving.metrics import RouterMetrics

        self.settings = ServingConfig.model_validate(settings)
        self.core = RouterCore([App(**a) for a in apps], accuracy, self.settings)
        self.metrics = RouterMetrics()
        self.started_s = time.time()
        # Ids of requests sent without one: a random prefix per replica and a counter (a uuid4
        # per request reads the OS's random source: a syscall and a GIL hand-off on the hot path).
        self._id_prefix, self._ids = uuid.uuid4().hex[:20], itertools.count()
        # VM targets per variant: key -> (handle, replicas); requests in flight per target. The
        # head's own target runs in this process (serving.local_models; called like a handle)
        # unless `head_in_process` is off: then it is the variant's ModelServer deployment.
        self.local_models = {}
        if self.settings.head_in_process:
            from serving.local_models import head_models
            handles = self.local_models = head_models(self.core.variants, self.settings)
        # The replica count `_pick_target` divides by: the in-process model runs `replicas`
        # batches at once; a ModelServer deployment has at least its min_replicas.
        self.targets = {v: {HEAD: (h, h.replicas if v in self.local_models
                                   else max(1, self.settings.options_for(v).min_replicas))}
                        for v, h in handles.items()}
        self.target_inflight: dict[tuple[str, str], int] = {}
        self.telemetry = IntervalStats(list(self.core.apps), self.core.variants, self.started_s)
        self.vm_cost_usd: dict[str, float] = {}
        self.control_status: dict = {}
        self.fn_pricing = FunctionPlatformConfig()  # replaced by the daemon's config on the first update
        f = self.settings.functions
        from serving.partition_route import worker_env  # partition functions' store and weights dirs
        from serving.function_fleet import build_function_provider  # local workers, or Lambda on aws
        self.functions = build_function_provider(provider, f, worker_env=worker_env())
        self.fn_memory = {v: f.memory_mb for v in self.core.variants}
        self.fn_warm_pool = {v: 0 for v in self.core.variants}
        self._fn_prev: dict[str, dict] = {}
        for v in self.core.variants:
            self.functions.deploy(v, f.memory_mb)
            self.metrics.set_function_memory_mb(v, f.memory_mb)
        self._init_function_batcher()  # serving.router_control: batch queues in front of the functions
        self._prewarming: set[str] = set()
        self._init_security_and_faults()
        self._stop = threading.Event()
        threading.Thread(target=self._reaper, name="function-reaper", daemon=True).start()

    def _init_security_and_faults(self) -> None:
        """Admin token, API keys, log redaction (serving.security); injected faults (tests)."""
        import os

        from prometheus_client import Counter

        from procurement.providers.local import FunctionFaults

        self.admin_token = security.load_admin_token(self.settings.admin_token_file)
        self.api_keys = security.ApiKeys.from_settings(self.settings, {a.name: a.variants
                                                                        for a in self.core.apps.values()})
        security.install_redaction([self.admin_token or "", *self.api_keys.secrets()])
        self.fn_memory_pinned: dict[str, int] = {}  # set by POST /admin/config; wins over the plan
        self.admin_applied: dict = {}
        self.allow_faults = os.environ.get("HYBRIDSERVE_ALLOW_FAULT_INJECTION") == "1"
        if os.environ.get("HYBRIDSERVE_FUNCTION_FAULTS"):
            self.functions.set_faults(FunctionFaults.parse(os.environ["HYBRIDSERVE_FUNCTION_FAULTS"]))
        self._collect_faults = 0
        self._vm_faults_pending: dict | None = None  # for the control loop's next collect
        self.retries = Counter("hybridserve_function_retries", "Failed function calls retried on a VM target",
                               ["model", "reason"], registry=self.metrics.registry)
        self.vm_retries = Counter("hybridserve_vm_retries", "Requests retried on another VM target after "
                                  "theirs failed (a VM died mid-request)", ["model"], registry=self.metrics.registry)
        self.denied = Counter("hybridserve_denied", "Requests refused for credentials", ["endpoint", "status"],
                              registry=self.metrics.registry)

    def _check_key(self, name: str, headers, endpoint: str) -> None:
        """Raise RequestFailure(401/403) when `name` is a protected app or variant without its key."""
        if not self.api_keys.protected(name):
            return
        try:
            self.api_keys.check(name, security.api_key_of(headers))
        except security.Denied as e:
            self.denied.labels(endpoint, str(e.status)).inc()
            raise RequestFailure(e.status, str(e)) from None

    def _reaper(self) -> None:
        while not self._stop.wait(5.0):
            self.functions.reap()
            for m in self.local_models.values():  # scaled from zero: unloaded when idle, as Serve would
                m.reap(self.settings.functions.keep_alive_s)

    def __del__(self):  # Serve calls it when the replica shuts down
        self._stop.set()
        self.functions.close()
        for m in self.local_models.values():
            m.close()

    # --- Open Inference Protocol over REST: health and metadata ---------------------------------
    @app.get("/v2/health/live")
    def live(self):
        return oip.health(live=True)

    @app.get("/v2/health/ready")
    def ready(self):
        if self._standing_loaded(self.core.variants):
            return oip.health(ready=True)
        return JSONResponse(oip.health(ready=False), status_code=503)

    def _standing_loaded(self, variants) -> bool:
        """The head's standing in-process models of `variants` are loaded (they load in the
        background at start): not ready until then, as a Serve replica is not until its model is.
        Variants scaled from zero (`lazy`) are ready unloaded."""
        return all(m.loaded or m.lazy for v, m in self.local_models.items() if v in variants)

    @app.get("/v2")
    def server_metadata(self):
        return oip.server_metadata("hybridserve", VERSION)

    def _metadata(self, name: str) -> dict:
        a, variant = self.core.resolve(name)
        if a is None:
            spec = spec_of(variant)
            return oip.model_metadata(name, spec.input_shape, spec.num_classes,
                                      platform=self.settings.options_for(variant).runtime,
                                      parameters={"kind": "variant", "accuracy": self.core.accuracy.get(variant)})
        spec = spec_of(a.variants[0])
        return oip.model_metadata(name, spec.input_shape, spec.num_classes, platform="hybridserve",
                                  parameters={"kind": "app", "slo_ms": a.slo_ms, "min_accuracy": a.min_accuracy,
                                              "variants": list(a.variants)})

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    def model_metadata(self, name: str, request: Request, version: str | None = None):
        try:
            self._check_key(name, request.headers, "metadata")
            return self._metadata(name)
        except UnknownName as e:
            return _error(404, str(e))
        except RequestFailure as e:
            return _error(e.status, str(e))

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    def model_ready(self, name: str, request: Request, version: str | None = None):
        try:
            self._check_key(name, request.headers, "ready")
            a, variant = self.core.resolve(name)
        except UnknownName as e:
            return _error(404, str(e))
        except RequestFailure as e:
            return _error(e.status, str(e))
        if self._standing_loaded([variant] if variant else a.variants):
            return oip.health(ready=True)
        return JSONResponse(oip.health(ready=False), status_code=503)

    # --- infer, both protocols -------------------------------------------------------------------
    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(self, name: str, request: Request, version: str | None = None):
        t0 = time.perf_counter()
        limit = int(self.settings.max_body_mb * 1024 * 1024)
        try:
            self._check_key(name, request.headers, "infer")
            declared = request.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise RequestFailure(413, f"body: {int(declared)} bytes exceed the limit of {limit}")
            # Read in chunks and stop at the limit: a chunked body without Content-Length must
            # not be buffered whole before it is refused.
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise RequestFailure(413, f"body: more than the limit of {limit} bytes")
                chunks.append(chunk)
            body = b"".join(chunks)
            resp = await self._infer(name, t0, lambda: oip.parse_infer_request(
                body, request.headers.get(oip.HEADER_LENGTH), output_names=oip.CLASSIFICATION_OUTPUTS))
        except RequestFailure as e:
            if e.status != 503:
                self.metrics.requests.labels(name if name in self.core.apps else "", "", "none", "client_error").inc()
            return _error(e.status, str(e))
        out, headers = oip.encode_infer_response(resp)
        return Response(content=out, headers=headers, media_type=headers.get("Content-Type"))

    async def _infer(self, name: str, t0: float, parse) -> oip.InferResponse:
        """Resolve, parse (`parse()` -> oip.InferRequest), choose, run, record; raises RequestFailure."""
        app_label, variant, backend, a = "", None, "none", None
        now_s = time.time()
        try:
            a, variant = self.core.resolve(name)
            app_label = a.name if a else ""
            req = parse()
            if variant is None:
                variant = self._choose(a, req)
            batch = oip.batch_from_request(req, spec_of(variant).input_shape, self.settings.max_samples_per_request)
            slo_ms = req.slo_ms or (a.slo_ms if a else math.inf)
            self.telemetry.arrival(now_s, app_label, variant)
            probs, backend, cold, target, fn_usd, retried = await self._run(variant, batch, slo_ms, t0)
        except oip.InvalidInput as e:
            raise RequestFailure(400, str(e)) from None
        except UnknownName as e:
            raise RequestFailure(404, str(e)) from None
        except NoModel as e:
            raise RequestFailure(422, str(e)) from None
        except _BackendError as e:
            self.telemetry.outcome(variant, "dropped", None, False)
            self.metrics.requests.labels(app_label, variant or "", backend, "server_error").inc()
            raise RequestFailure(503, str(e)) from None
        latency_ms = (time.perf_counter() - t0) * 1000.0
        request_id = req.id or f"{self._id_prefix}{next(self._ids):x}"
        req.id = request_id
        cost_usd = fn_usd if backend == "function" else self.vm_cost_usd.get(variant, 0.0)
        met = self.core.finish(request_id, a, variant, int(np.argmax(probs[0])), latency_ms, slo_ms, time.time(),
                               cost_usd=cost_usd)
        self.telemetry.outcome(variant, backend, latency_ms, met, fn_usd)
        params = {"variant": variant, "backend": backend, "latency_ms": round(latency_ms, 3), "cold_start": cold,
                  "slo_met": met, "target": target}
        if retried:
            params["retried_from"] = retried
        if a is not None:
            params.update(app=a.name, slo_ms=slo_ms)
        m = self.metrics
        served = m.served(app_label, variant, backend)
        served.requests_ok.inc()
        served.latency_s.observe(latency_ms / 1000.0)
        if not met:
            served.slo_violations.inc()
        if cold and backend == "function":
            m.cold_starts.labels(variant).inc()
        try:
            return oip.classification_response(req, name, probs, labels_of(variant), parameters=params)
        except oip.InvalidInput as e:
            raise RequestFailure(400, str(e)) from None

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

    async def _run(self, variant: str, batch: np.ndarray, slo_ms: float, t0: float):
        """(probabilities, backend, cold start, target, function usd, retried from): a VM target,
        or a function when the VM queue is too long; a failed function call is retried once on
        a VM target while the SLO budget allows (`retried from` says why, else None)."""
        retried = None
        chained = self.partitions.get(variant) is not None  # served as a chain of functions (partition plan)
        decision = self.core.decide_backend(variant, slo_ms, t0)
        if decision == "drop":  # the plan's route does not spill and the VM wait exceeds the client timeout
            raise _BackendError(f"model {variant}: the expected VM wait exceeds the client timeout and its "
                                f"planned route does not spill")
        # With a planned route the request spills exactly when the plan's rule says (as in the
        # simulator); without one, only where the function is expected to be faster.
        if decision == "function" and (self.core.planned(variant) or (
                self.partitions.faster(variant, self.core.expected_vm_ms(variant)) if chained
                else self._function_faster(variant))):
            f = self.settings.functions
            if chained:  # serving.partition_route: every hop billed, in a thread (it blocks)
                res = await self.partitions.run(variant, batch)
            else:
                res = await self.fn_batcher.invoke(variant, batch, f.timeout_s,
                                                   slo_ms - (time.perf_counter() - t0) * 1000.0)
            if res.ok:
                self._function_gauges(variant)
                from controller.ledger import function_charge_usd
                usd = res.usd if chained else function_charge_usd(
                    res.billed_ms, self.fn_memory.get(variant, f.memory_mb),
                    self.fn_pricing) / res.shared_by  # a batch's charge, split
                return res.payload, "function", res.cold_start, res.target if chained else "function", usd, None
            if not chained and res.billed_ms > 0:  # it ran, then failed: billed all the same
                from controller.ledger import function_charge_usd
                self.telemetry.charge_function(variant, function_charge_usd(
                    res.billed_ms, self.fn_memory.get(variant, f.memory_mb), self.fn_pricing) / res.shared_by)
            err = res.error or "error"
            reason = "throttle" if err.startswith("throttled") else "timeout" if err.startswith("timeout") else "error"
            # Throttled: queue at the VM deployment instead (as before). Failed or timed out: retry
            # on a VM target only if what is left of the SLO covers the VM's expected time, e.g.
            # SLO 200 ms, 120 ms spent, 30 ms expected at the VM: 150 <= 200, retry.
            elapsed_ms = (time.perf_counter() - t0) * 1000.0
            if reason != "throttle" and elapsed_ms + self.core.expected_vm_ms(variant) > slo_ms:
                raise _BackendError(f"function {variant}: {err}; no SLO budget left to retry on a VM "
                                    f"({elapsed_ms:.0f} ms of {slo_ms:g} ms spent)")
            self.retries.labels(variant, reason).inc()
            retried = f"function:{reason}"
        key, handle = self._pick_target(variant)
        try:
            probs, cold = await self._on_target(variant, key, handle, batch)
        except Exception as e:  # a replica died (its VM killed mid-request) or the deployment is unhealthy
            # Retry once on another target (the head or another VM's deployment) if what is left of
            # the SLO covers its expected time, the rule of the function retry above; otherwise,
            # or if that fails too, the explicit error: no request is dropped silently.
            first = f"model {variant} on {key}: {type(e).__name__}: {e}"
            other = self._pick_target(variant, exclude=key)
            elapsed_ms = (time.perf_counter() - t0) * 1000.0
            if other is None or elapsed_ms + self.core.expected_vm_ms(variant) > slo_ms:
                why = "no other VM target" if other is None else (
                    f"no SLO budget left to retry ({elapsed_ms:.0f} ms of {slo_ms:g} ms spent)")
                raise _BackendError(f"{first}; {why}") from None
            self.vm_retries.labels(variant).inc()
            retried = f"vm:{key}" if retried is None else f"{retried},vm:{key}"
            key, handle = other
            try:
                probs, cold = await self._on_target(variant, key, handle, batch)
            except Exception as e2:
                raise _BackendError(f"{first}; retry on {key}: {type(e2).__name__}: {e2}") from None
        return probs, "vm", cold, key, 0.0, retried

    async def _on_target(self, variant: str, key: str, handle, batch: np.ndarray):
        """(probabilities, cold) from one VM target, counted in flight while it runs; raises
        what the replica raised."""
        self.core.vm_started(variant)
        self.target_inflight[(variant, key)] = self.target_inflight.get((variant, key), 0) + 1
        self.metrics.inflight(variant).set(self.core.inflight_vm[variant])
        batch_ms = None
        route = self.core.routes.get(variant)
        try:
            if route is None:
                probs, batch_ms, cold = await handle.infer.remote(batch)
            else:  # the plan's batch size, applied by the replica before it queues this request
                probs, batch_ms, cold = await handle.infer.remote(batch, route.batch_size)
        finally:
            self.core.vm_finished(variant, batch_ms)
            self.target_inflight[(variant, key)] -= 1
            self.metrics.inflight(variant).set(self.core.inflight_vm[variant])
        self.metrics.routed.labels(variant, key).inc()
        return probs, cold

    def _pick_target(self, variant: str, exclude: str | None = None):
        """The VM target other than `exclude` (None when there is no other): the plan's, by
        capacity weight (serving.routing), when it names one that is up; else the fewest
        requests in flight per replica (no plan yet, or a target it lists has just gone)."""
        targets = self.targets[variant]
        key = self.core.pick_target(variant, exclude)
        if key is not None and key in targets:
            return key, targets[key][0]
        best = None
        for key, (handle, replicas) in self.targets[variant].items():
            if key == exclude:
                continue
            load = self.target_inflight.get((variant, key), 0) / replicas
            if best is None or load < best[0]:
                best = (load, key, handle)
        return None if best is None else (best[1], best[2])

    def _function_faster(self, variant: str) -> bool:
        """Spill only where it helps: an open batch to join, a warm instance is free, or a cold
        start (as measured so far; unknown before the first) is shorter than the expected wait at
        the VM deployment."""
        from serving.partition_route import spill_helps

        return spill_helps(self.fn_batcher.queued(variant) or self.functions.has_idle(variant),
                           [self.functions.cold_start_ms(variant)], self.core.expected_vm_ms(variant))

    def _function_gauges(self, variant: str) -> None:
        st = self.functions.stats().get(variant, {})
        self.metrics.function_instances.labels(variant).set(st.get("instances", 0))

    # --- hybridserve's own endpoints -----------------------------------------------------------
    @app.post("/feedback")
    async def feedback(self, request: Request):
        """Body {"id": "<request id>", "label": <class id or label>}, or a list of them: the
        true class of served requests. A list answers 200 with one result per item."""
        try:
            doc = await request.json()
        except ValueError:
            return _error(400, "body: not valid JSON")
        if isinstance(doc, list):
            results = []
            for i, item in enumerate(doc):
                status, out = self._feedback_one(item, request.headers)
                results.append(out if status == 200 else {"status": status, **out})
            return {"results": results}
        status, out = self._feedback_one(doc, request.headers)
        return out if status == 200 else _error(status, out["error"])

    def _feedback_one(self, doc, headers) -> tuple[int, dict]:
        if not isinstance(doc, dict):
            return 400, {"error": "body: must be a JSON object"}
        rid, label = doc.get("id"), doc.get("label")
        if not isinstance(rid, str) or not rid:
            return 400, {"error": "id: must be the non-empty id of a served request"}
        if isinstance(label, bool) or not isinstance(label, (int, str)):
            return 400, {"error": "label: must be a class id (integer) or a label (string)"}
        pending = self.core._pending.get(rid)
        if pending is None:
            return 404, {"error": f"id: no request {rid!r} awaiting feedback (unknown, sent to a variant, "
                                  f"already labelled or older than {self.settings.feedback_window_s:g} s)"}
        try:
            self._check_key(pending.app, headers, "feedback")
        except RequestFailure as e:
            return e.status, {"error": str(e)}
        labels = labels_of(pending.variant)
        if isinstance(label, str):
            if label not in labels:
                return 400, {"error": f"label: {label!r} is not a label of {pending.variant}"}
            label = labels.index(label)
        elif not 0 <= label < len(labels):
            return 400, {"error": f"label: class id {label} is outside [0, {len(labels) - 1}]"}
        correct = self.core.feedback(rid, label)
        self.metrics.feedback.labels(pending.app, pending.variant, str(correct).lower()).inc()
        return 200, {"id": rid, "variant": pending.variant, "correct": correct}

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
        fns = self.functions.stats()
        for v, st in fns.items():
            st["planned_memory_mb"], st["warm_pool"] = self.fn_memory.get(v), self.fn_warm_pool.get(v)
        targets = {v: {k: r for k, (_, r) in t.items()} for v, t in self.targets.items()}
        return _plain({"uptime_s": round(time.time() - self.started_s, 1), **self.core.summary(),
                       "functions": fns, "partitions": self.partitions.status(), "vm_targets": targets,
                       "vm_cost_per_request_usd": self.vm_cost_usd, "control": self.control_status})

    @app.get("/metrics")
    def prometheus(self):
        body, content_type = self.metrics.exposition()
        return Response(content=body, media_type=content_type)

    # --- admin (bearer token; serving.security) ------------------------------------------------
    def _admin(self, request: Request, endpoint: str):
        """None when the caller holds the admin token, else the error response (404 when off)."""
        try:
            security.check_admin(self.admin_token, request.headers.get("authorization"))
        except security.Denied as e:
            if e.status != 404:
                self.denied.labels(endpoint, str(e.status)).inc()
            return _error(e.status, str(e))
        return None

    async def _admin_doc(self, request: Request, endpoint: str):
        """(error response or None, parsed JSON body)."""
        denied = self._admin(request, endpoint)
        if denied is not None:
            return denied, None
        try:
            return None, await request.json()
        except ValueError:
            return _error(400, "body: not valid JSON"), None

    @app.post("/admin/config")
    async def admin_config(self, request: Request):
        """Apply a config patch live (what `hybridserve tune --apply` sends): pinned function
        memory per model (wins over the tuner's plan), the spill fraction (wins over the plan's
        spill rule from then on: serving.router.RouterCore.decide_backend)."""
        err, doc = await self._admin_doc(request, "admin_config")
        if err is not None:
            return err
        try:
            patch = security.validate(security.AdminPatch, doc)
        except ValueError as e:
            return _error(422, str(e))
        applied, ignored = {}, {}
        for v, mb in patch.policy.function_memory_mb.items():
            if v not in self.fn_memory:
                ignored[f"policy.function_memory_mb.{v}"] = "not a served variant"
                continue
            self.fn_memory_pinned[v] = self.fn_memory[v] = mb
            self.functions.deploy(v, mb, warm_pool=self.fn_warm_pool.get(v, 0))
            self.metrics.set_function_memory_mb(v, mb)
            applied[f"policy.function_memory_mb.{v}"] = mb
        if patch.policy.baseline_function_memory_mb is not None:
            ignored["policy.baseline_function_memory_mb"] = ("read by the baseline policies at start; the live "
                                                             "policy tunes function memory itself")
        if patch.serving.spill_fraction is not None:
            self.settings = self.settings.model_copy(update={"spill_fraction": patch.serving.spill_fraction})
            self.core.settings, self.core.spill_pinned = self.settings, True
            applied["serving.spill_fraction"] = patch.serving.spill_fraction
        self.admin_applied.update(applied)
        log.info("admin: config patch applied: %s", sorted(applied))
        return {"status": "applied", "applied": applied, "ignored": ignored}

    @app.get("/admin/config")
    def admin_config_get(self, request: Request):
        denied = self._admin(request, "admin_config")
        return denied or {"applied": self.admin_applied, "function_memory_mb": self.fn_memory,
                          "spill_fraction": self.settings.spill_fraction}

    @app.get("/admin/fleet")
    def admin_fleet(self, request: Request):
        """The fleet as the control loop last pushed it, the VM targets and function instances."""
        denied = self._admin(request, "admin_fleet")
        if denied is not None:
            return denied
        import ray
        node = getattr(ray._private.worker, "_global_node", None)
        return _plain({"fleet": self.control_status.get("fleet", []),
                       "vm_targets": {v: {k: r for k, (_, r) in t.items()} for v, t in self.targets.items()},
                       "functions": self.functions.stats(), "injected_faults": dict(self.functions.injected),
                       "ray_session_dir": node.get_session_dir_path() if node is not None else None})

    @app.post("/admin/faults")
    async def admin_faults(self, request: Request):
        """Inject faults (tests, soak): function errors / throttles / timeouts, failing collects.
        Exists only with HYBRIDSERVE_ALLOW_FAULT_INJECTION=1 in the daemon's environment."""
        if not self.allow_faults:
            return _error(404, "not found")
        err, doc = await self._admin_doc(request, "admin_faults")
        if err is not None:
            return err
        from procurement.providers.local import FunctionFaults
        try:
            patch = security.validate(security.FaultsPatch, doc)
        except ValueError as e:
            return _error(422, str(e))
        from procurement.providers.local_vm import VmFaults
        try:
            if patch.function is not None:
                self.functions.set_faults(FunctionFaults(**patch.function) if patch.function else None)
        except (ValueError, TypeError) as e:
            return _error(422, f"function: {e}")
        try:
            if patch.vm:
                VmFaults(**patch.vm)  # refuse a bad spec here, not in the control loop
        except (ValueError, TypeError) as e:
            return _error(422, f"vm: {e}")
        if patch.vm is not None:
            self._vm_faults_pending = patch.vm
        self._collect_faults = patch.control_collect_errors
        return {"status": "applied", "function": patch.function, "vm": patch.vm,
                "control_collect_errors": self._collect_faults}
