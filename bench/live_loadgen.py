"""The load generator against the live system (control loop on): a 10-minute WITS slice,
time-compressed, at a rate this 2-core shared machine sustains.

    .venv/bin/python bench/live_loadgen.py [--short] [--speedup 10] [--rate-scale 0.0075] [--start-s 0]

It starts `hybridserve run` (digits app, control loop on, hybrid policy, up to one local.small
VM), replays the slice with `controller.live.loadgen.run_load` (FP32 binary tensors, labels sent back as
batched feedback) over REST, then the same slice over KServe v2 gRPC (`--grpc`: ModelInfer on the
gRPC port, feedback still over REST), then reads /status for the control loop's view. Writes the
`live-loadgen` section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._report import write_section  # noqa: E402
from bench.live_common import add_slice_args, slice_args, Daemon, load_note  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_slice_args(ap)
    args = slice_args(ap)
    from controller.trace import load_trace, prepare
    from controller.live.loadgen import run_load, schedule

    counts = prepare(load_trace("wits"), args.start_s, args.duration_s, args.rate_scale, args.speedup)
    offsets = schedule(counts)
    with Daemon(control=True) as d:
        res = asyncio.run(run_load(d.url, "digits", offsets, 200.0))
        print(res.report(200.0), flush=True)
        res_grpc = asyncio.run(run_load(d.url, "digits", offsets, 200.0, grpc_target=d.grpc_target))
        with urllib.request.urlopen(d.url + "/status", timeout=30) as r:
            st = json.loads(r.read())
    report = res.report(200.0)
    print(res_grpc.report(200.0))
    table = ["| transport | requests | ok | errors | p50 ms | p95 ms | p99 ms | SLO attainment | backends | "
             "cold starts |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in (("REST (first)", res), ("gRPC (second)", res_grpc)):
        table.append(f"| {name} | {r.scheduled:,} | {len(r.latencies_ms):,} | {sum(r.errors.values()):,} | "
                     f"{r.percentile_ms(50):.1f} | {r.percentile_ms(95):.1f} | {r.percentile_ms(99):.1f} | "
                     f"{r.slo_met / max(r.scheduled, 1):.2%} | {dict(r.backends)} | {r.cold_starts} |")
    c = st.get("control", {})
    body = "\n".join([
        f"WITS [{args.start_s}, {args.start_s + args.duration_s}) trace seconds, speedup x{args.speedup:g} "
        f"({len(counts)} s of wall time), **rate scale x{args.rate_scale:g}** "
        f"({len(offsets):,} requests, mean {len(offsets) / len(counts):.1f} req/s, peak {counts.max()} req/s): "
        "the rate this machine sustains with headroom for the trace's bursts and the machine's stalls (the "
        "router path tops out near 110 req/s at 8 in flight here, see live-router-overhead). "
        "App `digits` (SLO 200 ms), FP32 binary tensors, labels sent back as batched feedback; control loop on (`hybrid`, up to 1 local.small VM).", "",
        "```", report, "```", "",
        "The same slice again over KServe v2 gRPC (`hybridserve loadgen --grpc`, `grpc.aio` ModelInfer with the "
        "`application` metadata, labels still to REST /feedback), right after the REST run on the same daemon "
        "(so the selector has already learnt and functions may still be warm):", "", *table, "",
        f"Control loop at the end: {c.get('tick', {}).get('ticks')} ticks, errors {c.get('tick', {}).get('errors')}, "
        f"cost so far {json.dumps({k: round(v, 6) for k, v in c.get('cost_usd', {}).items()})} USD, "
        f"fleet events: {'; '.join(c.get('tick', {}).get('events', [])[-6:]) or 'none'}.", "", load_note()])
    write_section("live-loadgen", "Live: loadgen on a 10-minute WITS slice", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
