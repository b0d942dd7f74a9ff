"""`hybridserve loadgen`: replay a request trace against a running `hybridserve run`.

Each wall second of the (sliced, time-compressed, rate-scaled) trace sends that second's count
of requests, spread evenly, with an async aiohttp client. Requests carry held-out digits test
images (PNG, base64 in a v2 JSON body) and, once answered, their true labels go to POST
/feedback, so the selector learns real accuracy. Latency is measured from each request's
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
    slo_met: int = 0
    errors: Counter = field(default_factory=Counter)  # "http 503", "timeout", ...
    backends: Counter = field(default_factory=Counter)
    variants: Counter = field(default_factory=Counter)
    cold_starts: int = 0
    correct: int = 0
    labelled: int = 0
    wall_s: float = 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

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
    extension (cheap to parse); `png`: a base64 PNG in a JSON body (the router decodes it)."""
    from serving import digits, images
    from serving.oip import encode_infer_request

    x, y = digits.test_samples()
    bodies = []
    for i, sample in enumerate(x):
        if payload == "pixels":
            body, headers = encode_infer_request({"input": sample[None]}, request_id=f"lg-{i}", parameters=parameters)
            bodies.append((body, headers))
            continue
        doc = {"id": f"lg-{i}", "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                            "data": [base64.b64encode(images.encode_png(sample)).decode()]}]}
        if parameters:
            doc["parameters"] = parameters
        bodies.append((json.dumps(doc, separators=(",", ":")).encode(), {"Content-Type": "application/json"}))
    return bodies, y


async def run_load(url: str, name: str, offsets_s: np.ndarray, slo_ms: float, *, parameters: dict | None = None,
                   feedback: bool = True, max_in_flight: int = 256, timeout_s: float = 30.0,
                   progress: bool = False, payload: str = "pixels", feedback_every_s: float = 0.5) -> LoadgenResult:
    """Send each request at its offset; labels go back to /feedback in batches (a list body every
    `feedback_every_s`), so feedback never holds up a request. Each request's id is unique per run
    (the id of a held-out sample, cycled, plus a run prefix)."""
    import aiohttp

    bodies, labels = _bodies(parameters, payload)
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
            k = i % len(bodies)
            body, headers = bodies[k]
            rid = f"lg-{run_id}-{i}"
            body = body.replace(f'"id":"lg-{k}"'.encode(), f'"id":"{rid}"'.encode(), 1)
            if "Inference-Header-Content-Length" in headers:
                headers = dict(headers, **{"Inference-Header-Content-Length": str(
                    int(headers["Inference-Header-Content-Length"]) + len(rid) - len(f"lg-{k}"))})
            async with gate:
                try:
                    async with session.post(f"{url}/v2/models/{name}/infer", data=body, headers=headers) as r:
                        out = await r.read()
                        status = r.status
                        hlen = r.headers.get("Inference-Header-Content-Length")
                except asyncio.TimeoutError:
                    res.errors["timeout"] += 1
                    return
                except aiohttp.ClientError as e:
                    res.errors[type(e).__name__] += 1
                    return
                latency_ms = (time.perf_counter() - (t0 + due_s)) * 1000.0
                if status != 200:
                    res.errors[f"http {status}"] += 1
                    return
                doc = json.loads(out[:int(hlen)] if hlen else out)
                p = doc.get("parameters", {})
                res.latencies_ms.append(latency_ms)
                res.slo_met += latency_ms <= slo_ms
                res.backends[p.get("backend", "?")] += 1
                res.variants[p.get("variant", "?")] += 1
                res.cold_starts += bool(p.get("cold_start"))
                if feedback and doc.get("id"):
                    pending.append({"id": doc["id"], "label": int(labels[k])})

        async def tracked(i, due):
            try:
                await one(i, due)
            finally:
                if bar is not None:
                    bar.update(1)

        done = asyncio.Event()
        fb = asyncio.create_task(feedback_loop(done)) if feedback else None
        await asyncio.gather(*(tracked(i, float(d)) for i, d in enumerate(offsets_s)))
        res.wall_s = time.perf_counter() - t0
        done.set()
        if fb is not None:
            await fb
            await send_feedback()
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


def loadgen_from_args(args) -> int:
    from controller.sim.trace import TraceError, load_trace, prepare

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
    slo_ms = args.slo_ms if args.slo_ms is not None else _app_slo_ms(url, args.app)
    offsets = schedule(counts)
    print(f"loadgen: {args.trace} [{args.start_s}, {args.start_s + args.duration_s}) s, speedup x{args.speedup:g}, "
          f"rate x{args.rate_scale:g}: {len(offsets):,} requests over {len(counts)} s to {url} app {args.app!r} "
          f"(SLO {slo_ms:g} ms)", flush=True)
    params = {"slo_ms": args.slo_ms} if args.slo_ms is not None else None
    res = asyncio.run(run_load(url, args.app, offsets, slo_ms, parameters=params, feedback=not args.no_feedback,
                               max_in_flight=args.max_in_flight, payload=getattr(args, "payload", "pixels"),
                               progress=not args.no_progress and sys.stderr.isatty()))
    print(res.report(slo_ms))
    return 0
