"""`hybridserve loadgen`: replay a request trace against a running `hybridserve run`.

Each wall second of the (sliced, time-compressed, rate-scaled) trace sends that second's count
of requests, spread evenly, with an async aiohttp client (REST, the default) or a `grpc.aio`
channel (`--grpc`: KServe v2 `GRPCInferenceService/ModelInfer`, the protos of serving.grpc_v2).
Requests carry held-out digits test images (an FP32 tensor, or a PNG) and, once answered, their
true labels go to POST /feedback over REST either way, so the selector learns real accuracy. Latency is measured from each request's
*scheduled* send time, so client-side queueing (max in flight) counts against the SLO.
Prints p50/p95/p99, SLO attainment, errors by kind, backends and variants used, accuracy.
"""
from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np


class LoadgenError(Exception):
    """Bad arguments or an unreachable server (one line, exit 2)."""


@dataclass
class LoadgenResult:
    scheduled: int = 0
    latencies_ms: list[float] = field(default_factory=list)  # successful requests
    records: list = field(default_factory=list)  # per success: (due s, backend, target, latency ms, cold start)
    slo_met: int = 0
    errors: Counter = field(default_factory=Counter)  # "http 503", "timeout", ...
    backends: Counter = field(default_factory=Counter)
    variants: Counter = field(default_factory=Counter)
    targets: Counter = field(default_factory=Counter)  # "head", "vm-<id>", "function"
    cold_starts: int = 0
    correct: int = 0
    labelled: int = 0
    wall_s: float = 0.0

    def percentile_ms(self, q: float, backend: str | None = None) -> float:
        """The q-th latency percentile of successful requests: all, or those one backend served."""
        xs = self.latencies_ms if backend is None else [r[3] for r in self.records if r[1] == backend]
        return float(np.percentile(xs, q)) if xs else float("nan")

    def report(self, slo_ms: float) -> str:
        ok = len(self.latencies_ms)
        lines = [
            f"requests {self.scheduled:,} in {self.wall_s:.1f} s ({self.scheduled / max(self.wall_s, 1e-9):.1f}/s); "
            f"ok {ok:,}; errors {sum(self.errors.values()):,}"
            + (f" ({', '.join(f'{k}: {v}' for k, v in self.errors.most_common())})" if self.errors else ""),
            f"latency ms: p50 {self.percentile_ms(50):.1f}  p95 {self.percentile_ms(95):.1f}  "
            f"p99 {self.percentile_ms(99):.1f}",
            f"SLO {slo_ms:g} ms attainment: {self.slo_met / max(self.scheduled, 1):.2%} of all requests "
            f"(errors count as misses)",
            f"backends: {dict(self.backends)}; cold starts {self.cold_starts}; variants: {dict(self.variants)}",
        ]
        if self.labelled:
            lines.append(f"accuracy (feedback): {self.correct / self.labelled:.3f} over {self.labelled:,} labels")
        return "\n".join(lines)


def schedule(counts: np.ndarray) -> np.ndarray:
    """Send offsets in seconds: second s's count spread evenly over [s, s + 1)."""
    out = [s + (np.arange(n) + 0.5) / n for s, n in enumerate(counts.tolist()) if n > 0]
    return np.concatenate(out) if out else np.zeros(0)


def _bodies(parameters: dict | None, payload: str = "pixels") -> tuple[list[tuple[bytes, dict]], np.ndarray]:
    """(body, headers) per held-out digit, and the labels. `pixels`: the FP32 tensor with the binary
    extension (cheap to parse); `png`: a base64 PNG in a JSON body (the router decodes it);
    `imagenet`: 3x224x224 FP32 tensors for the ImageNet variants (labels -1: no feedback)."""
    from serving import digits, images
    from serving.oip import encode_infer_request

    if payload == "imagenet":  # ImageNet-shaped tensors (no labels: the variants are randomly initialised)
        x = np.random.default_rng(0).random((8, 3, 224, 224), dtype=np.float32)
        y = np.full(len(x), -1)
    else:
        x, y = digits.test_samples()
    bodies = []
    for i, sample in enumerate(x):
        if payload in ("pixels", "imagenet"):
            body, headers = encode_infer_request({"input": sample[None]}, request_id=f"lg-{i}", parameters=parameters)
            bodies.append((body, headers))
            continue
        doc = {"id": f"lg-{i}", "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                            "data": [base64.b64encode(images.encode_png(sample)).decode()]}]}
        if parameters:
            doc["parameters"] = parameters
        bodies.append((json.dumps(doc, separators=(",", ":")).encode(), {"Content-Type": "application/json"}))
    return bodies, y


# Serve's gRPC proxy routes by the `application` metadata once more than one app is deployed
# (the control loop deploys each procured VM's replicas as their own app): name the router's.
GRPC_APPLICATION = "hybridserve"


def parse_grpc_target(target: str) -> str:
    """'host:port' with a port in 1..65535 (raises LoadgenError naming the flag)."""
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise LoadgenError(f"--grpc-target must be host:port, got {target!r}")
    return target


def grpc_request(name: str, sample: np.ndarray, request_id: str, parameters: dict | None = None,
                 payload: str = "pixels"):
    """The ModelInferRequest of one sample: `pixels`, the FP32 tensor `input` as raw bytes;
    `png`, the BYTES tensor `image` (one PNG). The same request the REST body carries."""
    from serving import images
    from serving.grpc_v2 import set_param, pb

    req = pb.ModelInferRequest(model_name=name, id=request_id)
    if payload == "pixels":
        x = np.ascontiguousarray(sample[None], dtype=np.float32)
        req.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
        req.raw_input_contents.append(x.tobytes())
    else:
        req.inputs.add(name="image", datatype="BYTES", shape=[1]).contents.bytes_contents.append(
            images.encode_png(sample))
    for k, v in (parameters or {}).items():
        set_param(req.parameters, k, v)
    return req


def grpc_response_params(resp) -> dict:
    """A ModelInferResponse's parameters as plain values (variant, backend, cold_start, ...)."""
    from serving.grpc_v2 import param_value

    return {k: param_value(v) for k, v in resp.parameters.items()}


class _RestSender:
    """POST /v2/models/<name>/infer; returns (error kind or None, response parameters, id)."""

    def __init__(self, session, url: str, name: str, parameters: dict | None, payload: str):
        self.session, self.url, self.name = session, url, name
        self.bodies, self.labels = _bodies(parameters, payload)

    async def send(self, k: int, rid: str):
        import aiohttp

        body, headers = self.bodies[k]
        body = body.replace(f'"id":"lg-{k}"'.encode(), f'"id":"{rid}"'.encode(), 1)
        if "Inference-Header-Content-Length" in headers:
            headers = dict(headers, **{"Inference-Header-Content-Length": str(
                int(headers["Inference-Header-Content-Length"]) + len(rid) - len(f"lg-{k}"))})
        try:
            async with self.session.post(f"{self.url}/v2/models/{self.name}/infer", data=body, headers=headers) as r:
                out = await r.read()
                status = r.status
                hlen = r.headers.get("Inference-Header-Content-Length")
        except asyncio.TimeoutError:
            return "timeout", None, None
        except aiohttp.ClientError as e:
            return type(e).__name__, None, None
        if status != 200:
            return f"http {status}", None, None
        doc = json.loads(out[:int(hlen)] if hlen else out)
        return None, doc.get("parameters", {}), doc.get("id")


class _GrpcSender:
    """GRPCInferenceService/ModelInfer on one grpc.aio channel; same answer shape as _RestSender."""

    def __init__(self, target: str, name: str, parameters: dict | None, payload: str, timeout_s: float):
        import grpc
        from tritonclient.grpc import service_pb2_grpc

        from serving import digits

        x, self.labels = digits.test_samples()
        self.requests = [grpc_request(name, sample, f"lg-{i}", parameters, payload) for i, sample in enumerate(x)]
        self.channel = grpc.aio.insecure_channel(target, options=[("grpc.max_send_message_length", -1),
                                                                  ("grpc.max_receive_message_length", -1)])
        self.stub = service_pb2_grpc.GRPCInferenceServiceStub(self.channel)
        self.timeout_s = timeout_s
        self._grpc = grpc

    async def send(self, k: int, rid: str):
        # A copy: grpc.aio serialises the request in a task that may run after the next send.
        req = type(self.requests[k])()
        req.CopyFrom(self.requests[k])
        req.id = rid
        try:
            resp = await self.stub.ModelInfer(req, timeout=self.timeout_s,
                                              metadata=(("application", GRPC_APPLICATION),))
        except self._grpc.aio.AioRpcError as e:
            code = e.code()
            return ("timeout" if code == self._grpc.StatusCode.DEADLINE_EXCEEDED else f"grpc {code.name}"), None, None
        return None, grpc_response_params(resp), resp.id

    async def close(self) -> None:
        await self.channel.close()


async def run_load(url: str, name: str, offsets_s: np.ndarray, slo_ms: float, *, parameters: dict | None = None,
                   feedback: bool = True, max_in_flight: int = 256, timeout_s: float = 30.0,
                   progress: bool = False, payload: str = "pixels", feedback_every_s: float = 0.5,
                   grpc_target: str | None = None) -> LoadgenResult:
    """Send each request at its offset (over REST, or gRPC to `grpc_target`); labels go back to
    /feedback (REST) in batches (a list body every `feedback_every_s`), so feedback never holds
    up a request. Each request's id is unique per run (the id of a held-out sample, cycled, plus
    a run prefix)."""
    import aiohttp

    res = LoadgenResult(scheduled=len(offsets_s))
    gate = asyncio.Semaphore(max_in_flight)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(offsets_s), unit="req", file=sys.stderr)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    connector = aiohttp.TCPConnector(limit=max_in_flight)
    run_id = f"{time.time_ns() % 10**9:x}"
    pending: list[dict] = []
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        sender = (_GrpcSender(grpc_target, name, parameters, payload, timeout_s) if grpc_target
                  else _RestSender(session, url, name, parameters, payload))
        labels = sender.labels
        t0 = time.perf_counter()

        async def send_feedback() -> None:
            batch = pending[:]
            del pending[:]
            if not batch:
                return
            try:
                async with session.post(f"{url}/feedback", json=batch) as fr:
                    if fr.status == 200:
                        for r in (await fr.json()).get("results", []):
                            if "correct" in r:
                                res.labelled += 1
                                res.correct += bool(r["correct"])
                    else:
                        res.errors["feedback"] += len(batch)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                res.errors["feedback"] += len(batch)

        async def feedback_loop(done: asyncio.Event) -> None:
            while not done.is_set():
                try:
                    await asyncio.wait_for(done.wait(), feedback_every_s)
                except asyncio.TimeoutError:
                    pass
                await send_feedback()

        async def one(i: int, due_s: float) -> None:
            delay = t0 + due_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            k = i % len(labels)
            async with gate:
                err, p, rid = await sender.send(k, f"lg-{run_id}-{i}")
                if err is not None:
                    res.errors[err] += 1
                    return
                latency_ms = (time.perf_counter() - (t0 + due_s)) * 1000.0
                res.latencies_ms.append(latency_ms)
                res.slo_met += latency_ms <= slo_ms
                res.backends[p.get("backend", "?")] += 1
                res.records.append((round(due_s, 3), p.get("backend", "?"), p.get("target", "?"),
                                    round(latency_ms, 1), bool(p.get("cold_start"))))
                res.variants[p.get("variant", "?")] += 1
                res.targets[p.get("target", "?")] += 1
                res.cold_starts += bool(p.get("cold_start"))
                if feedback and rid and labels[k] >= 0:
                    pending.append({"id": rid, "label": int(labels[k])})

        async def tracked(i, due):
            try:
                await one(i, due)
            finally:
                if bar is not None:
                    bar.update(1)

        done = asyncio.Event()
        fb = asyncio.create_task(feedback_loop(done)) if feedback else None
        try:
            await asyncio.gather(*(tracked(i, float(d)) for i, d in enumerate(offsets_s)))
            res.wall_s = time.perf_counter() - t0
            done.set()
            if fb is not None:
                await fb
                await send_feedback()
        finally:  # the gRPC channel is closed on an error or cancellation too
            done.set()
            if grpc_target:
                await sender.close()
    if bar is not None:
        bar.close()
    return res


def _app_slo_ms(url: str, name: str) -> float:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/v2/models/{name}", timeout=10) as r:
            doc = json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise LoadgenError(f"{url}: model {name!r}: HTTP {e.code} {e.read()[:200].decode(errors='replace')}") from None
    except (urllib.error.URLError, OSError) as e:
        raise LoadgenError(f"{url} is not reachable ({e}); start it with `hybridserve run`") from None
    return float((doc.get("parameters") or {}).get("slo_ms") or 1000.0)


def _check_grpc(target: str, timeout_s: float = 10.0) -> None:
    import grpc

    with grpc.insecure_channel(target) as ch:
        try:
            grpc.channel_ready_future(ch).result(timeout=timeout_s)
        except grpc.FutureTimeoutError:
            raise LoadgenError(f"gRPC {target} is not reachable in {timeout_s:g} s; is `hybridserve run` "
                               "serving gRPC there (serving.grpc_port)?") from None


def loadgen_from_args(args) -> int:
    from controller.trace import TraceError, load_trace, prepare

    for flag in ("speedup", "rate_scale"):
        if getattr(args, flag) <= 0:
            raise LoadgenError(f"--{flag.replace('_', '-')} must be > 0, got {getattr(args, flag):g}")
    if args.duration_s <= 0 or args.start_s < 0 or args.max_in_flight < 1:
        raise LoadgenError("--duration-s must be > 0, --start-s >= 0 and --max-in-flight >= 1")
    try:
        counts = prepare(load_trace(args.trace), args.start_s, args.duration_s, args.rate_scale, args.speedup)
    except TraceError as e:
        raise LoadgenError(str(e)) from None
    url = args.url.rstrip("/")
    target = getattr(args, "grpc_target", None)
    target = parse_grpc_target(target or "127.0.0.1:9000") if getattr(args, "grpc", False) or target else None
    slo_ms = args.slo_ms if args.slo_ms is not None else _app_slo_ms(url, args.app)
    if target:
        _check_grpc(target)
    offsets = schedule(counts)
    print(f"loadgen: {args.trace} [{args.start_s}, {args.start_s + args.duration_s}) s, speedup x{args.speedup:g}, "
          f"rate x{args.rate_scale:g}: {len(offsets):,} requests over {len(counts)} s to "
          f"{f'gRPC {target} (feedback to {url})' if target else url} app {args.app!r} (SLO {slo_ms:g} ms)", flush=True)
    params = {"slo_ms": args.slo_ms} if args.slo_ms is not None else None
    res = asyncio.run(run_load(url, args.app, offsets, slo_ms, parameters=params, feedback=not args.no_feedback,
                               max_in_flight=args.max_in_flight, payload=getattr(args, "payload", "pixels"),
                               progress=not args.no_progress and sys.stderr.isatty(), grpc_target=target))
    print(res.report(slo_ms))
    return 0
