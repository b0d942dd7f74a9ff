"""Router overhead: hybridserve's router path vs a plain Ray Serve deployment of the same model, in
one Ray session on this machine.

- plain: `POST /plain` -> Serve HTTP proxy -> a `PlainModel` replica (digits-small, `@serve.batch`,
  raw FP32 body in, class ids out as JSON);
- router, head in-process (the default, `serving.head_in_process: true`):
  `POST /v2/models/digits-small/infer` (v2 binary tensor extension) -> proxy -> the router
  replica, which parses, picks the target, batches and runs digits-small itself
  (serving.local_models), encodes the v2 response;
- router via handle (`head_in_process: false`, the path before issue #11, and the path to a
  procured VM's replicas): the same router in a second Serve app at `/handle`, sending each
  request on to a digits-small ModelServer replica through its DeploymentHandle.
Latency: sequential requests (p50, p99); throughput: an async client with 8 in flight for a fixed
time; CPU: the CPU time of the proxy and the replicas of each path per request in the
throughput phase (from /proc). Goal: <= 1 ms added at p50 and >= 90 % of the plain throughput.
Writes the `live-router-overhead` section of BENCHMARKS.md.

    .venv/bin/python bench/live_router_overhead.py [--requests 200] [--seconds 10] [--rounds 2]
    .venv/bin/python bench/live_router_overhead.py --quick     # ~1 min of load: a smoke run
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._report import write_section  # noqa: E402
from bench.live_common import BENCH_CONFIG, free_port, load_note  # noqa: E402

PLAIN, INPROC, HANDLE = "plain Serve deployment", "router, head in-process (default)", "router via handle"
# Process titles (Ray sets `ray::<actor class>`) of what serves each path, besides the proxy.
_REPLICAS = {PLAIN: ("ServeReplica:plain:",), INPROC: ("ServeReplica:hybridserve:router",),
             HANDLE: ("ServeReplica:hybridserve-handle:router", "ServeReplica:hybridserve-handle:model-digits-small")}


def plain_app():
    from ray import serve
    from starlette.requests import Request

    @serve.deployment(name="plain-digits-small", ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=32)
    class PlainModel:
        def __init__(self):
            from serving.runtimes import load_model
            self.model = load_model("digits-small")

        @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
        async def infer(self, xs: list[np.ndarray]) -> list[list[int]]:
            sizes = [len(x) for x in xs]
            probs = await asyncio.to_thread(self.model.predict, np.concatenate(xs))
            ids, out, k = probs.argmax(axis=1).tolist(), [], 0
            for n in sizes:
                out.append(ids[k:k + n])
                k += n
            return out

        async def __call__(self, request: Request):
            x = np.frombuffer(await request.body(), np.float32).reshape(-1, 1, 8, 8)
            return {"class_ids": await self.infer(x)}
    return PlainModel.bind()


def _descendants() -> list[int]:
    """Every live process below this one (the Ray head, its workers: the Serve replicas)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    children.setdefault(int(fh.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    out, stack = [], [os.getpid()]
    while stack:
        for c in children.get(stack.pop(), []):
            out.append(c)
            stack.append(c)
    return out


def _pids(prefixes: tuple[str, ...]) -> list[int]:
    """Our processes whose title (Ray sets `ray::<actor class>[.<method>]`) starts with a prefix."""
    found = []
    for pid in _descendants():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().decode(errors="replace")
        except OSError:
            continue
        if any(cmd.startswith("ray::" + p) for p in prefixes):
            found.append(pid)
    return found


def _cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


async def _post(session, target: tuple) -> None:
    url, body, headers = target
    async with session.post(url, data=body, headers=headers) as r:
        await r.read()
        assert r.status == 200, (url, r.status)


async def latency(paths: dict, requests: int) -> dict[str, list[float]]:
    """Sequential requests, one path after the other in turn (A B C A B C ...), so a load swing
    on the shared machine hits every path alike; ms per request by path."""
    import aiohttp

    out = {name: [] for name in paths}
    async with aiohttp.ClientSession() as s:
        for target in paths.values():
            for _ in range(10):  # warm: connections, the batchers' tasks
                await _post(s, target)
        for _ in range(requests):
            for name, target in paths.items():
                t = time.perf_counter()
                await _post(s, target)
                out[name].append((time.perf_counter() - t) * 1000.0)
    return out


async def throughput(target: tuple, seconds: float, pids: dict[str, list[int]], in_flight: int = 8) -> dict:
    """Requests per second with `in_flight` concurrent clients, and CPU ms per request of `pids`."""
    import aiohttp

    async with aiohttp.ClientSession() as s:
        for _ in range(10):
            await _post(s, target)
        done, stop = 0, time.perf_counter() + seconds

        async def worker():
            nonlocal done
            while time.perf_counter() < stop:
                await _post(s, target)
                done += 1
        cpu0 = {k: _cpu_s(p) for k, p in pids.items()}
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        elapsed = time.perf_counter() - t0
        cpu = {k: (_cpu_s(p) - cpu0[k]) * 1000.0 / max(done, 1) for k, p in pids.items()}
    return {"rps": done / elapsed, "proxy_cpu_ms": cpu["proxy"], "replica_cpu_ms": cpu["replicas"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200, help="sequential requests per path (all rounds)")
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds at 8 in flight per path (all rounds)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds over the paths (median reported)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 60 requests and 4 s per path, 1 round")
    args = ap.parse_args()
    if args.quick:
        args.requests, args.seconds, args.rounds = 60, 4.0, 1
    import tempfile

    from ray import serve

    from controller.config import load_config
    from controller.live import daemon
    from serving.deployments import build_app
    from serving.oip import encode_infer_request
    from serving.settings import serving_config

    os.environ.setdefault("HYBRIDSERVE_CACHE", os.path.join(tempfile.gettempdir(), "hybridserve-test-cache"))
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        fh.write(BENCH_CONFIG % {"control": "false"})
    cfg = load_config(fh.name)
    settings = serving_config(cfg, {"http_port": free_port(), "grpc_port": 0})
    x = np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32)
    rows = {}
    try:
        url = daemon.start(cfg, settings)
        serve.run(plain_app(), name="plain", route_prefix="/plain")
        apps, accuracy = daemon.prepare(cfg, settings)
        serve.run(build_app(apps, accuracy, settings.model_copy(update={"head_in_process": False})),
                  name="hybridserve-handle", route_prefix="/handle")
        body, headers = encode_infer_request({"input": x})
        raw = (x.tobytes(), {"Content-Type": "application/octet-stream"})
        paths = {PLAIN: (url + "/plain", *raw), INPROC: (url + "/v2/models/digits-small/infer", body, headers),
                 HANDLE: (url + "/handle/v2/models/digits-small/infer", body, headers)}
        proxy = _pids(("ProxyActor",))
        names = list(paths)
        for rnd in range(args.rounds):
            lat = asyncio.run(latency(paths, args.requests // args.rounds))
            for k in range(len(names)):  # throughput: each round starts with another path
                name = names[(rnd + k) % len(names)]
                r = asyncio.run(throughput(paths[name], args.seconds / args.rounds,
                                           {"proxy": proxy, "replicas": _pids(_REPLICAS[name])}))
                r.update(p50=float(np.percentile(lat[name], 50)), p99=float(np.percentile(lat[name], 99)))
                acc = rows.setdefault(name, {key: [] for key in r})
                for key in acc:
                    acc[key].append(r[key])
                print(rnd, name, {key: round(v, 2) for key, v in r.items()}, flush=True)
    finally:
        daemon.stop()
        os.unlink(fh.name)
    write_section("live-router-overhead", "Live: router overhead vs a plain Serve deployment", report(rows, args))
    return 0


def report(rows: dict, args) -> str:
    med = {n: {k: float(np.median(v)) for k, v in r.items()} for n, r in rows.items()}
    lines = ["| path | p50 ms | p99 ms | req/s (8 in flight) | CPU ms/request: proxy | replicas |",
             "|---|---|---|---|---|---|"]
    for name, m in med.items():
        lines.append(f"| {name} | {m['p50']:.2f} | {m['p99']:.2f} | {m['rps']:.1f} | {m['proxy_cpu_ms']:.2f} "
                     f"| {m['replica_cpu_ms']:.2f} |")
    p, r, h = med[PLAIN], med[INPROC], med[HANDLE]
    cpu = {n: m["proxy_cpu_ms"] + m["replica_cpu_ms"] for n, m in med.items()}
    added, share = r["p50"] - p["p50"], r["rps"] / p["rps"]
    verdict = (f"Router (default) added at p50: **{added:.2f} ms** (goal <= 1 ms: "
               f"{'met' if added <= 1 else f'not met by {added - 1:.2f} ms'}); throughput **{100 * share:.0f} %** "
               f"of plain (goal >= 90 %: {'met' if share >= 0.9 else f'not met by {90 - 100 * share:.0f} points'}). "
               f"Via the handle (before #11): +{h['p50'] - p['p50']:.2f} ms, {100 * h['rps'] / p['rps']:.0f} %. "
               f"Both goals sit within this shared machine's run-to-run noise (a p50 moves by ~1-2 ms between runs); "
               f"CPU per request is the steadier measure and puts the router at "
               f"{100 * cpu[PLAIN] / cpu[INPROC]:.0f} % of plain's throughput where CPU is the only limit.")
    return "\n".join([
        "One Ray session (`controller.live.daemon.start` in the benchmark process) serving three paths to the same model "
        "(digits-small, `@serve.batch` / batcher of 16 waiting up to 5 ms, 1 sample per request): a plain Serve "
        "deployment, the router running the head's digits-small itself (default), and the same router in a second "
        f"app with `head_in_process: false` (handle to a ModelServer replica). Median of {args.rounds} alternating "
        f"round(s); in all, {args.requests} sequential requests and {args.seconds:g} s at 8 in flight per path. CPU: "
        "the proxy's and the path's replicas' CPU time (/proc) over the requests served at 8 in flight.",
        "", *lines, "", verdict, "",
        "Why: on 2 cores, throughput at 8 in flight is CPU per request, so the CPU columns explain the req/s. "
        "py-spy on the router replica (issue #11) showed the handle hop as most of the router path's extra CPU: "
        "Serve's request-router thread, the actor call and its serialization in the router, then a second "
        "replica's Serve machinery (replica wrapper, `@serve.batch` with its Ray metrics) around a "
        "sub-millisecond forward pass. The router now runs the head's replicas in its own process "
        "(serving.local_models: runtime loaded lazily, an asyncio batcher per variant with `@serve.batch`'s rule, "
        "the forward pass in a thread); procured VMs are still reached through their handles. Also gone from the "
        "per-request path: Serve's access log line, Prometheus label lookups (children cached), a uuid4 per "
        "request without an id (an OS random read: a syscall and a GIL hand-off), a numpy copy of the label table. "
        f"CPU per request (proxy + replicas): {cpu[INPROC]:.1f} ms for the router against {cpu[PLAIN]:.1f} ms for "
        f"plain and {cpu[HANDLE]:.1f} ms via the handle. What is left over plain is the router's own work in "
        "its one replica, which py-spy splits as: FastAPI's routing, dependency solving and middleware (~3 % of "
        "the replica's samples), the endpoint's Python (~6 %: v2 header parse, response build and encode, "
        "selector, spill and telemetry bookkeeping; ~0.2 ms per request measured in-process), and more "
        "GIL hand-offs between the event loop, Serve's threads and the forward-pass thread. Both paths pay "
        "the same Serve ingress: the ASGI body fetch (the replica calls back into the proxy actor for the "
        "body, ~15 % of either replica's samples) and the replica's own event-loop hop. Closing the rest would "
        "mean leaving FastAPI for a bare ASGI handler on the infer route, or Serve's proxy altogether.",
        "", load_note()])


if __name__ == "__main__":
    sys.exit(main())
