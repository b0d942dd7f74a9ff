"""REST vs gRPC on the live system: the same model (digits-small), FP32 payloads from 1 KB to 5 MB,
through the stock Triton clients (tritonclient.http with the binary extension; tritonclient.grpc).

Per payload size: p50 / p99 of sequential requests, then throughput with 4 client threads for a
fixed time. Writes the `live-rest-vs-grpc` section of BENCHMARKS.md.

    .venv/bin/python bench/live_rest_vs_grpc.py [--requests 30] [--seconds 4]
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._report import write_section  # noqa: E402
from bench.live_common import Daemon, load_note  # noqa: E402

SAMPLE_BYTES = 1 * 8 * 8 * 4  # one digits sample, FP32
SIZES = {"1 KB": 4, "64 KB": 256, "1 MB": 4096, "5 MB": 20480}
MODEL = "digits-small"


def clients(d: Daemon):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    def rest_client():
        c = httpclient.InferenceServerClient(d.url.removeprefix("http://"), connection_timeout=120,
                                             network_timeout=120)

        def call(x):
            inp = httpclient.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x, binary_data=True)
            c.infer(MODEL, [inp], outputs=[httpclient.InferRequestedOutput("class_ids", binary_data=True)])
        return call

    def grpc_client():
        c = grpcclient.InferenceServerClient(d.grpc_target, channel_args=[
            ("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)])

        def call(x):
            inp = grpcclient.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            c.infer(MODEL, [inp], outputs=[grpcclient.InferRequestedOutput("class_ids")], client_timeout=120)
        return call
    return {"REST": rest_client, "gRPC": grpc_client}


def measure(make_call, x, requests: int, seconds: float, threads: int = 4) -> dict:
    call = make_call()
    call(x)  # warm: connection, replica
    lat = []
    for _ in range(requests):
        t = time.perf_counter()
        call(x)
        lat.append((time.perf_counter() - t) * 1000.0)
    done = [0] * threads
    stop = time.perf_counter() + seconds

    def worker(k):
        c = make_call()
        while time.perf_counter() < stop:
            c(x)
            done[k] += 1
    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
            "rps": sum(done) / (time.perf_counter() - t0)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    with Daemon(control=False) as d:
        makers = clients(d)
        for label, n in SIZES.items():
            x = rng.random((n, 1, 8, 8), dtype=np.float32)
            reqs = args.requests if n < 4096 else max(5, args.requests // 3)
            r = {proto: measure(mk, x, reqs, args.seconds) for proto, mk in makers.items()}
            rows.append((label, n * SAMPLE_BYTES, r))
            print(label, {p: {k: round(v, 1) for k, v in m.items()} for p, m in r.items()}, flush=True)
    lines = ["| payload | bytes | REST p50 ms | REST p99 ms | REST req/s | gRPC p50 ms | gRPC p99 ms | gRPC req/s |",
             "|---|---|---|---|---|---|---|---|"]
    for label, nbytes, r in rows:
        a, b = r["REST"], r["gRPC"]
        lines.append(f"| {label} | {nbytes:,} | {a['p50']:.1f} | {a['p99']:.1f} | {a['rps']:.1f} | "
                     f"{b['p50']:.1f} | {b['p99']:.1f} | {b['rps']:.1f} |")
    body = "\n".join([
        f"Model `{MODEL}` (on the Ray head, run inside the router process: `serving.head_in_process`, batches of up to 16), FP32 tensors of N×1×8×8; the same "
        "stock clients an app uses (tritonclient.http with the binary tensor extension, tritonclient.grpc). "
        f"Latency: {args.requests} sequential requests per size (a third of that from 1 MB); throughput: "
        f"4 client threads for {args.seconds:g} s. Both go through Ray Serve's proxies (HTTP: uvicorn + the "
        "router's FastAPI app; gRPC: Serve's gRPC proxy, request protos pickled to the router replica).",
        "", *lines, "", load_note()])
    write_section("live-rest-vs-grpc", "Live: REST vs gRPC by payload size", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
