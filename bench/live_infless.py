"""INFless live: the function tier alone on this machine, with function batching none / uniform /
non-uniform, on a time-compressed, rate-scaled WITS slice (issue 12, "Live, a WITS slice").

    .venv/bin/python bench/live_infless.py [--short] [--speedup 10] [--rate-scale 0.0075] [--slo-ms 200]

1. The configurations: the exact solver (`procurement.function_configs.solve_for_model`, what
   the hybrid policy's `function_batching` runs) over the slice's per-second rates, on the live
   catalog of the variant (controller.live.live_catalog: digits measured now), with the daemon's memory
   floor; `uniform` allows one configuration, `non-uniform` up to three (bands of the rate).
   `none` is one request per invocation at the uniform plan's memory (only batching differs).
2. Per mode, `hybridserve run` (bench/live_common.Daemon) serving the `digits` app from one
   variant, control loop off, the configurations pinned as `serving.functions.batching`, and
   everything spilled to the functions (`spill_fraction` ~0: past the first request the head's
   VM replica is "too slow" for every request). A warm-up starts the function instances (their
   cold start imports mxnet) and lets the batcher measure a warm invocation, then the slice is
   replayed with controller.live.loadgen.run_load (latency from each request's scheduled send).
3. Figures from the router's function stats (GET /status, after minus before the slice):
   invocations, cold starts, billed duration; cost with controller.ledger.function_charge_usd
   at the configured memory, per function-served request.
Writes the `live-infless` section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import tempfile
import time
import urllib.request
from collections import Counter

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._report import write_section  # noqa: E402
from bench.live_common import Daemon, add_slice_args, load_note, slice_args  # noqa: E402

MODES = ("none", "uniform", "non-uniform")
MIN_MEMORY_MB = 1024  # serving.control.function_min_memory_mb: what the live tuner may go down to

CONFIG = """
apps:
  - name: image-classify
    slo_ms: 300
    min_accuracy: 0.70
serving:
  serve_config_apps: false
  apps:
    - name: digits
      slo_ms: %(slo_ms)g
      min_accuracy: 0.5
      variants: [%(variant)s]
  variants:
    %(variant)s: {min_replicas: 1, num_cpus: 0.25}
  spill_fraction: 1.0e-6
  max_body_mb: 16
  functions:
    enabled: true
    memory_mb: %(memory_mb)d
    concurrency_limit: 2
    keep_alive_s: 600
    batching: %(batching)s
    batch_slack_ms: %(slack_ms)g
  control: {enabled: false}
"""


def plan_configs(variant: str, rates_per_s: np.ndarray, slo_ms: float) -> dict:
    """mode -> (memory_mb, [batch configuration dicts], solver's expected $ per request)."""
    from controller.config import load_config
    from procurement.function_configs import solve_for_model
    from controller.live.live_catalog import build_live_catalog

    cfg = load_config(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                                   "default.yaml"))
    catalog = build_live_catalog(cfg.catalog.dir, tempfile.mkdtemp(prefix="live-infless-catalog-"), [variant],
                                 {variant: 0.9}, ["local.small"])
    fp = cfg.functions.model_copy(update={"min_memory_mb": max(cfg.functions.min_memory_mb, MIN_MEMORY_MB)})
    out = {}
    for mode, k in (("uniform", 1), ("non-uniform", 3)):
        plan = solve_for_model(catalog, variant, fp, rates_per_s, slo_ms, max_configs=k)
        if plan is None:
            raise SystemExit(f"the catalog has no function profile of {variant}")
        out[mode] = (plan.configs[0].memory_mb,
                     [{"batch_size": c.batch_size, "wait_ms": c.wait_ms, "rate_lo_per_s": c.rate_lo_per_s,
                       "rate_hi_per_s": c.rate_hi_per_s} for c in plan.configs], plan.expected_cost_per_request_usd)
    plain = solve_for_model(catalog, variant, fp, rates_per_s, slo_ms, max_configs=1, wait_grid_ms=(0.0,))
    out["none"] = (out["uniform"][0], [], plain.expected_cost_per_request_usd if plain else math.nan)
    return out


def _yaml_batching(variant: str, configs: list[dict]) -> str:
    if not configs:
        return "{}"
    # JSON is YAML, save for infinity
    rows = [", ".join(f"{k}: {'.inf' if v == math.inf else v}" for k, v in c.items()) for c in configs]
    return "{%s: [%s]}" % (variant, ", ".join("{%s}" % r for r in rows))


def _status(url: str) -> dict:
    with urllib.request.urlopen(url + "/status", timeout=30) as r:
        return json.loads(r.read())


def _warm_up(url: str, variant: str, min_s: float, max_s: float = 300.0) -> str:
    """The head's replica answers the first request (so the router has measured the VM path and
    spills from then on); then rounds of 4 req/s until both function instances have started
    (a cold start imports mxnet: tens of seconds on a loaded machine) and at least `min_s` has
    passed, so the slice starts warm and the batcher has measured warm invocations."""
    from controller.live.loadgen import run_load

    t0 = time.monotonic()
    reports = [asyncio.run(run_load(url, "digits", np.zeros(1), 600_000.0, feedback=False, timeout_s=180.0))]
    while time.monotonic() - t0 < max_s:
        st = _status(url)["functions"].get(variant, {})
        if st.get("instances", 0) >= 2 and st.get("invocations", 0) >= 8 and time.monotonic() - t0 >= min_s:
            break
        reports.append(asyncio.run(run_load(url, "digits", np.arange(0.0, 3.0, 0.25), 600_000.0, feedback=False,
                                            timeout_s=180.0)))
    return (f"{time.monotonic() - t0:.0f} s, {sum(r.scheduled for r in reports)} requests, backends "
            f"{dict(sum((r.backends for r in reports), Counter()))}, errors "
            f"{dict(sum((r.errors for r in reports), Counter()))}")


def run_mode(variant: str, memory_mb: int, configs: list[dict], offsets_s: np.ndarray, slo_ms: float,
             warmup_s: float, slack_ms: float) -> dict:
    from controller.config import FunctionPlatformConfig
    from controller.ledger import function_charge_usd
    from controller.live.loadgen import run_load

    text = CONFIG % {"slo_ms": slo_ms, "variant": variant, "memory_mb": memory_mb,
                     "batching": _yaml_batching(variant, configs), "slack_ms": slack_ms}
    with Daemon(config_text=text) as d:
        warm = _warm_up(d.url, variant, warmup_s)
        before = _status(d.url)["functions"].get(variant, {})
        res = asyncio.run(run_load(d.url, "digits", offsets_s, slo_ms, feedback=False, timeout_s=60.0))
        after = _status(d.url)["functions"].get(variant, {})
    inv = after.get("invocations", 0) - before.get("invocations", 0)
    dur_ms = (after.get("mean_duration_ms", 0.0) * after.get("invocations", 0)
              - before.get("mean_duration_ms", 0.0) * before.get("invocations", 0))
    usd = function_charge_usd(dur_ms / inv, memory_mb, FunctionPlatformConfig()) * inv if inv else 0.0
    fn_requests = res.backends.get("function", 0)
    lat = np.asarray(res.latencies_ms)
    return {"requests": res.scheduled, "ok": len(lat), "errors": dict(res.errors), "function": fn_requests,
            "vm": res.backends.get("vm", 0), "invocations": inv,
            "cold_starts": after.get("cold_starts", 0) - before.get("cold_starts", 0),
            "mean_batch": fn_requests / inv if inv else 0.0, "cost_usd": usd,
            "usd_per_request": usd / fn_requests if fn_requests else math.nan,
            "violation_pct": 100.0 * (1 - res.slo_met / max(res.scheduled, 1)),
            "p50_ms": float(np.percentile(lat, 50)) if lat.size else math.nan,
            "p99_ms": float(np.percentile(lat, 99)) if lat.size else math.nan,
            "mean_invoke_ms": dur_ms / inv if inv else math.nan,
            "function_errors": after.get("errors", 0) - before.get("errors", 0),
            "warmup": {"report": warm, "functions": before}}


def _configs_text(memory_mb: int, configs: list[dict]) -> str:
    if not configs:
        return f"{memory_mb} MB, batch 1"
    return "; ".join(f"{memory_mb} MB, batch {c['batch_size']}, wait {c['wait_ms']:g} ms, "
                     f"band [{c['rate_lo_per_s']:g}, {c['rate_hi_per_s']:g}) req/s" for c in configs)


def _reading(plans: dict) -> str:
    """What the figures say about the solver's plan (not about the machine's noise)."""
    same = plans["uniform"][1] == plans["non-uniform"][1]
    return " ".join([
        ("The non-uniform solver chose the uniform configuration: digits-small's latency is nearly flat in "
         "the batch size and a batch needs no more memory than one request, so one band (the largest batch "
         "the SLO allows) is optimal on this slice; the two batched rows differ only by run-to-run noise."
         if same else "The non-uniform solver chose several bands (the table's configurations)."),
        "Live batches are smaller than the solver expects (it holds requests up to `min(wait, SLO - "
        "invoke overhead - execution)`): the live queue also gives up the slack and the time a request has "
        "already spent in the router, and bounds the execution of a batch size it has not measured yet by "
        "the sizes it has (at first linearly), so it holds for less. On a loaded machine the mean invocation "
        "time of the same batches moves from run to run (earlier runs here: 1.5 to 26 ms), and with it the "
        "cost of each row; the per-request fee is what batching saves for certain, the GB-seconds only where "
        "a batch runs about as fast as one request."])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_slice_args(ap)
    ap.add_argument("--slo-ms", type=float, default=200.0)
    ap.add_argument("--variant", default="digits-small")
    ap.add_argument("--warmup-s", type=float, default=20.0)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--slack-ms", default=None, help="serving.functions.batch_slack_ms, or several "
                    "(\"50,100\": each batched mode once per value; default: the setting's default)")
    args = slice_args(ap)  # --short: the common short slice; here also a shorter warm-up
    if args.short:
        args.warmup_s = min(args.warmup_s, 12.0)
    os.environ.setdefault("HYBRIDSERVE_CACHE", os.path.join(tempfile.gettempdir(), "hybridserve-test-cache"))
    from controller.trace import load_trace, prepare
    from controller.live.loadgen import schedule

    counts = prepare(load_trace("wits"), args.start_s, args.duration_s, args.rate_scale, args.speedup)
    offsets = schedule(counts)
    plans = plan_configs(args.variant, counts.astype(float), args.slo_ms)
    from serving.settings import FunctionOptions
    slacks = ([float(x) for x in args.slack_ms.split(",")] if args.slack_ms
              else [FunctionOptions().batch_slack_ms])
    runs = [(m.strip(), slack) for m in args.modes.split(",") if m.strip()
            for slack in (slacks if m.strip() != "none" else slacks[:1])]
    rows, notes = [], []
    for mode, slack in runs:
        memory_mb, configs, expected = plans[mode]
        print(f"{mode}, slack {slack:g} ms: {_configs_text(memory_mb, configs)}", flush=True)
        r = run_mode(args.variant, memory_mb, configs, offsets, args.slo_ms, args.warmup_s, slack)
        print(json.dumps(r, default=str), flush=True)
        slack_text = f"{slack:g}" if configs else "-"
        rows.append(f"| {mode} | {slack_text} | {_configs_text(memory_mb, configs)} | {r['requests']:,} | "
                    f"{r['function']:,} / "
                    f"{r['vm']:,} | {r['invocations']:,} | {r['mean_batch']:.2f} | {r['cold_starts']} | "
                    f"{r['cost_usd']:.3e} | {r['usd_per_request']:.3e} | {expected:.3e} | {r['violation_pct']:.2f} | "
                    f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['mean_invoke_ms']:.1f} | "
                    f"{sum(r['errors'].values())} |")
        if r["errors"]:
            notes.append(f"{mode} (slack {slack_text}): errors {r['errors']}.")
    body = "\n".join([
        f"WITS [{args.start_s}, {args.start_s + args.duration_s}) trace seconds, speedup x{args.speedup:g} "
        f"({len(counts)} s of wall time a mode), rate scale x{args.rate_scale:g} ({len(offsets):,} requests, mean "
        f"{len(offsets) / len(counts):.1f} req/s, peak {counts.max()} req/s). App `digits` served by "
        f"`{args.variant}` alone, SLO {args.slo_ms:g} ms, from the local function tier only (control loop off, "
        f"the configurations pinned, `spill_fraction` ~0, 2 function instances at most), after a "
        f"warm-up of at least {args.warmup_s:g} s (until both function instances are warm). Configurations "
        "from the exact solver over the slice's per-second rates on the live catalog (what "
        "`function_batching: uniform | nonuniform` plans); `none` runs at the same memory, one request per "
        "invocation. `slack`: the part of the SLO the batch queue keeps for the path around the invocation "
        "(`serving.functions.batch_slack_ms`).", "",
        "| batching | slack ms | configurations | requests | served by function / VM | invocations | requests per "
        "invocation | cold starts | function cost USD | USD per function request | solver's expected USD "
        "per request | SLO violations % | p50 ms | p99 ms | mean invocation ms | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows, "",
        "Cost: each invocation billed once at the configured memory (Lambda prices: GB-s plus the per-request "
        "fee, which dominates for a model this small, so sharing an invocation is what saves); per request: "
        "the function cost over the requests the functions served. SLO violations: requests answered after "
        "the SLO (from their scheduled send) or not at all. A few requests go to the head's VM replica when "
        "every function instance is busy and a cold start would be slower (`Router._function_faster`); they "
        "count in the latencies, not in the cost.",
        *notes, "", _reading(plans), "", load_note()])
    write_section("live-infless", "INFless live: function batching on the function tier (WITS slice)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
