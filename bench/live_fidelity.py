"""Fidelity: the same trace slice and config through the live system and through the simulator.

    .venv/bin/python bench/live_fidelity.py [--app imagenet|digits] [--slices START:DURATION:RATE,...]
        [--start-s S --duration-s D --rate-scale R] [--speedup 10] [--short]

Both sides model the same system: the same policy (`hybrid`, whose selector both use: the live
router selects with the policy's selector), the same compressed WITS counts (one count per wall
second; simulator arrivals `even`, like the load generator), the same fleet (the Ray head as a
standing VM of `serving.head_instance_type`, its capacity split over its variants by their work;
at most one local.small VM on top, 10 s emulated boot), the same routing (the plan's routing
table: targets weighted by planned capacity, the planned batch, the simulator's spill rule) and
the same catalog: the live side runs first and the simulator plans with a copy of the daemon's
own catalog (/status control.catalog_dir), whose rows carry what this machine measured at start
(the forward pass plus the proxy and router time).

`--app imagenet` (default): the ImageNet-architecture variants squeezenet, mobilenet and
resnet18 (random initialisation; real compute), at rates this machine can carry, on slices where
the load doubles within a minute or two: the policy buys a VM and requests spill to functions
(cold starts included) within a few minutes. `--app digits`: the real-accuracy digits app (cheap
models: little happens on this machine's rates). Default slices: the two below (--slices); one
--start-s/--duration-s/--rate-scale instead gives one slice. Reports per slice SLO violation %,
cost and p95 side by side (goal: cost and p95 within 15 %; the violation percentage within 1.5
percentage points), and the share of requests each target served (head, procured VMs, functions),
live against simulated. Writes the `live-fidelity` section of BENCHMARKS.md. `--short`: 240-s
slices (24 wall seconds) for a quick run.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._report import write_section  # noqa: E402
from bench.live_common import add_slice_args, BENCH_CONFIG, Daemon, load_note  # noqa: E402

HEAD_TYPE = "local.small"
DIGITS_CONFIG = BENCH_CONFIG.replace("control: {enabled: %(control)s, instance_types: [local.small], max_vms: 1, "
                                     "prewarm_functions: false}",
                                     "control: {enabled: true, instance_types: [local.small], max_vms: 1, "
                                     "vm_boot_s: 10, prewarm_functions: false}\n"
                                     f"  head_instance_type: {HEAD_TYPE}")
# The ImageNet architectures with random weights: real compute (15-30 ms a forward pass at batch 1
# on one vCPU here, ~45-60 ms through proxy and router). The head is not a standing VM here (null):
# the catalog's batched capacity of one local.small (~40-70 req/s) is more than this 2-core machine
# can send, so with it no VM would ever be bought; without it the policy buys a local.small VM
# once the load pays for one and the requests until it serves go to functions, cold starts
# included. Functions priced as tests/integration/live.yaml (7.5x AWS's per-request fee), so a VM
# pays from a few requests per second.
IMAGENET_CONFIG = """
apps:
  - name: imagenet
    slo_ms: 1000
    min_accuracy: 0.5
policy:
  control_interval_s: 5
  scale_down_delay_s: 60
functions:
  price_usd_per_request: 0.0000015
serving:
  head_instance_type: null
  serve_config_apps: false
  apps:
    - name: imagenet
      slo_ms: 1000
      min_accuracy: 0.5
      variants: [squeezenet, mobilenet, resnet18]
  max_body_mb: 16
  functions: {enabled: true, memory_mb: 1769, concurrency_limit: 3, keep_alive_s: 60}
  control: {enabled: true, instance_types: [local.small], max_vms: 1, vm_boot_s: 10, prewarm_functions: false}
"""
APPS = {"imagenet": ("imagenet", IMAGENET_CONFIG, 1000.0, "imagenet"),
        "digits": ("digits", DIGITS_CONFIG, 200.0, "pixels")}
# (trace start s, trace duration s, rate scale): the load doubles within the first minutes
# (WITS at x10: ~1,800 -> ~3,700 and ~1,170 -> ~2,370 requests per wall second before scaling).
DEFAULT_SLICES = ((4500, 2400, 0.0035), (14600, 2400, 0.0055))
VIOLATION_GOAL_PP = 1.5
GOAL = 0.15


def simulate(counts, cfg_path: str, catalog_dir: str, serve_s: float | None = None):
    """The simulator on the daemon's catalog, with the head as a standing VM of the same type.
    serve_s: the live VMs' launch-to-serving time; the simulator's VMs boot that long (the
    policy still plans with the catalog's boot, as the live policy did)."""
    from controller.catalog import Catalog
    from controller.config import AppConfig, StandingVmConfig, load_config
    from controller.sim.engine import Simulation
    from controller.live.control_loop import policy_config
    from controller.live.daemon import prepare
    from controller.live.live_catalog import head_catalog_type, read_latency_jitter_ms
    from serving.settings import serving_config

    cfg = load_config(cfg_path)
    settings = serving_config(cfg)
    apps, _ = prepare(cfg, settings)
    pcfg = policy_config(cfg, settings)
    sim_cfg = pcfg.simulator.model_copy(update={
        "arrivals": "even", "standing_vms": ([StandingVmConfig(instance_type=head_catalog_type(settings.head_instance_type))]
                                             if settings.head_instance_type else []),
        "prewarm_functions": settings.control.prewarm_functions, "warm_start": False,
        "vm_latency_jitter_ms": read_latency_jitter_ms(catalog_dir)})
    pcfg = pcfg.model_copy(update={"apps": [AppConfig(name=a.name, slo_ms=a.slo_ms, min_accuracy=a.min_accuracy)
                                            for a in apps], "simulator": sim_cfg})
    sim = Simulation(pcfg, Catalog(catalog_dir), counts, "hybrid", policy_kwargs={"selector": settings.selector})
    if serve_s is not None:
        from procurement.providers.fake import FakeVmProvider, FaultHooks
        boot_dir = tempfile.mkdtemp(prefix="fidelity-boot-")
        shutil.copytree(catalog_dir, boot_dir, dirs_exist_ok=True)
        set_boot_s(boot_dir, serve_s)
        sim.provider = FakeVmProvider.from_catalog(Catalog(boot_dir), sim.rng_boot, FaultHooks())
    r = sim.run()
    if serve_s is not None:
        shutil.rmtree(boot_dir, ignore_errors=True)
    n = max(r.requests, 1)
    head = sim.served_on_standing
    return {"requests": r.requests, "slo_violation_pct": 100.0 * r.slo_violations / n, "p95_ms": r.percentile_ms(95),
            "vm_p95_ms": r.percentile_ms(95, "vm"), "function_p95_ms": r.percentile_ms(95, "function"),
            "total_cost_usd": r.total_usd, "vm_cost_usd": r.vm_usd, "function_cost_usd": r.function_usd,
            "function_share_pct": 100.0 * r.served_function / n, "cold_starts": r.cold_starts,
            "shares_pct": {"head": 100.0 * head / n, "procured VMs": 100.0 * (r.served_vm - head) / n,
                           "functions": 100.0 * r.served_function / n, "dropped": 100.0 * r.dropped / n},
            "variants": {m: c for m, c in zip(r.models, r.model_requests) if c}}


def gap(name: str, a: float, b: float) -> tuple[str, bool]:
    """(shown gap, met): percentage points for the violation %, else relative to the larger."""
    if name.startswith("SLO"):
        d = abs(a - b)
        return f"{d:.2f} pp", d <= VIOLATION_GOAL_PP
    if max(abs(a), abs(b)) == 0:
        return "0 %", True
    rel = abs(a - b) / max(abs(a), abs(b))
    return f"{100.0 * rel:.0f} %", rel <= GOAL


def _status(url: str, timeout_s: float = 180.0) -> dict:
    """The control loop's status, once it has ticked (the daemon answers ready a little before)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with urllib.request.urlopen(url + "/status", timeout=30) as r:
            control = json.loads(r.read()).get("control") or {}
        if "catalog_dir" in control or time.monotonic() > deadline:
            return control
        time.sleep(1.0)


def app_has_head(app: str) -> bool:
    """Whether the app's bench config makes the head a standing VM."""
    return "head_instance_type: null" not in APPS[app][1]


def live_shares(res) -> dict:
    """Per target group, % of the scheduled requests (errors: none of these)."""
    n = max(res.scheduled, 1)
    vm = sum(c for t, c in res.targets.items() if str(t).startswith("vm-"))
    return {"head": 100.0 * res.targets.get("head", 0) / n, "procured VMs": 100.0 * vm / n,
            "functions": 100.0 * res.backends.get("function", 0) / n,
            "dropped": 100.0 * sum(res.errors.values()) / n}


def run_slice(app: str, start_s: int, duration_s: int, rate_scale: float, speedup: float,
              records_dir: str | None = None) -> dict:
    """One slice live, then simulated on the daemon's catalog; prints the live / sim / events lines.
    With `records_dir`, the live requests and both sides' decision logs are kept there."""
    from controller.decision_log import ENV as DECISION_LOG
    from controller.trace import load_trace, prepare
    from controller.live.loadgen import run_load, schedule

    name, config, slo_ms, payload = APPS[app]
    if records_dir:  # the daemon (a child process) and the simulation (here) both read it
        os.makedirs(records_dir, exist_ok=True)
        os.environ[DECISION_LOG] = os.path.join(records_dir, f"decisions-{start_s}.jsonl")
    counts = prepare(load_trace("wits"), start_s, duration_s, rate_scale, speedup)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        fh.write(config)
    catalog_dir = tempfile.mkdtemp(prefix="fidelity-catalog-")
    try:
        with Daemon(control=True, config_text=config) as d:
            before = _status(d.url)
            shutil.copytree(before["catalog_dir"], catalog_dir, dirs_exist_ok=True)
            load_start_s = time.time()
            res = asyncio.run(run_load(d.url, name, schedule(counts), slo_ms, payload=payload,
                                       feedback=payload != "imagenet"))
            st = _status(d.url)
            if records_dir:  # per request: when it was due, who served it, its latency, a cold start
                with open(os.path.join(records_dir, f"live-{start_s}.json"), "w") as rec:
                    json.dump(res.records, rec)
            with urllib.request.urlopen(d.url + "/metrics", timeout=30) as r:
                metrics_page = r.read().decode()
        n = max(res.scheduled, 1)
        events = st.get("tick", {}).get("events") or []
        idle_s = idle_before_load_s(st.get("tick") or {}, load_start_s)
        cost = st["cost_usd"]
        startup_usd = cost.get("startup_function", 0.0)
        live = {"requests": res.scheduled, "slo_violation_pct": 100.0 * (n - res.slo_met) / n,
                "p95_ms": res.percentile_ms(95), "vm_p95_ms": res.percentile_ms(95, "vm"),
                "function_p95_ms": res.percentile_ms(95, "function"),
                # the daemon's own start-up calibration requests are not the slice's load
                "total_cost_usd": cost["total"] - startup_usd, "vm_cost_usd": cost["vm"],
                "function_cost_usd": cost["function"] - startup_usd,
                "function_share_pct": 100.0 * res.backends.get("function", 0) / n, "cold_starts": res.cold_starts,
                "shares_pct": live_shares(res), "variants": dict(res.variants)}
        print("live", live, "targets", dict(res.targets), "errors", dict(res.errors), flush=True)
        print("events", events, flush=True)
        serve_s = time_to_serve_s(events)
        # The live policy ticked idle from the loop's start to the load's (its predictors and the
        # VM cover saw those quiet seconds): the simulator replays them too, then the slice.
        sim = simulate(np.concatenate([np.zeros(idle_s, counts.dtype), counts]), fh.name, catalog_dir, serve_s)
        print("sim", sim, flush=True)
        with open(os.path.join(catalog_dir, "vm_latency.csv")) as f:
            vm_rows = [ln.split(",") for ln in f.read().splitlines()[1:]]
        with open(os.path.join(catalog_dir, "models.csv")) as f:
            model_rows = [ln.split(",") for ln in f.read().splitlines()[1:]]
    finally:
        os.unlink(fh.name)
        shutil.rmtree(catalog_dir, ignore_errors=True)
    return {"app": app, "slice": (start_s, duration_s, rate_scale, speedup), "counts": counts, "live": live,
            "time_to_serve_s": serve_s, "idle_s": idle_s,
            "sim": sim, "events": events, "errors": dict(res.errors), "metrics_page": metrics_page,
            "service_ms": {r[0]: r[3] for r in vm_rows if r[1] == HEAD_TYPE and r[2] == "1"},
            "cold_ms": {r[0]: r[5] for r in model_rows}}


def idle_before_load_s(tick: dict, load_start_s: float) -> int:
    """Whole seconds the policy observed before the load began: from the first second of the
    rows its first tick saw (/status `tick.observed_from_s`, the router's telemetry start) to
    the load's start. Those quiet seconds fill its predictors' first buckets (a first bucket half
    idle halves the first level), so the simulator replays them too."""
    first_s = tick.get("observed_from_s")
    return 0 if first_s is None else max(0, int(round(load_start_s - float(first_s))))


def time_to_serve_s(events: list[str]) -> float | None:
    """Seconds from a VM's launch to its Serve app serving, from the loop's events
    ("HH:MM:SS launch <id> (...) for <m>", "HH:MM:SS <id> serves <m> ..."); the mean, None if none."""
    def secs(e):
        h, m, s_ = map(int, e.split(" ", 1)[0].split(":"))
        return 3600 * h + 60 * m + s_
    launched, waits = {}, []
    for e in events:
        words = e.split()
        if len(words) > 2 and words[1] == "launch":
            launched[words[2]] = secs(e)
        elif len(words) > 2 and words[2] == "serves" and words[1] in launched:
            waits.append((secs(e) - launched[words[1]]) % 86400)
    return float(np.mean(waits)) if waits else None


def set_boot_s(catalog_dir: str, boot_s: float) -> None:
    """Every instance type's boot in the simulator's copy of the catalog (no spread)."""
    import csv
    path = os.path.join(catalog_dir, "instance_types.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["boot_s_mean"], r["boot_s_std"] = f"{boot_s:g}", "0"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def slice_table(out: dict) -> tuple[list[str], list[str]]:
    """(markdown lines, measures that missed the goal) of one slice."""
    sim, live = out["sim"], out["live"]
    rows = [("SLO violations (%)", sim["slo_violation_pct"], live["slo_violation_pct"]),
            ("p95 latency (ms)", sim["p95_ms"], live["p95_ms"]),
            ("cost (USD)", sim["total_cost_usd"], live["total_cost_usd"])]
    more = [("  p95 on VMs (ms)", sim["vm_p95_ms"], live["vm_p95_ms"]),
            ("  p95 on functions (ms)", sim["function_p95_ms"], live["function_p95_ms"]),
            ("  VM cost (USD)", sim["vm_cost_usd"], live["vm_cost_usd"]),
            ("  function cost (USD)", sim["function_cost_usd"], live["function_cost_usd"]),
            ("  function cold starts", sim["cold_starts"], live["cold_starts"])]
    lines = ["| measure | simulator | live | gap | within goal |", "|---|---|---|---|---|"]
    missed = []
    for name, a, b in rows:
        shown, met = gap(name, a, b)
        if not met:
            missed.append(name)
        lines.append(f"| {name} | {a:.6g} | {b:.6g} | {shown} | {'yes' if met else '**no**'} |")
    lines += [f"| {name} | {a:.6g} | {b:.6g} | {gap(name, a, b)[0]} | |" for name, a, b in more]
    lines += ["", "| share of requests served by | simulator | live |", "|---|---|---|"]
    lines += [f"| {k} | {sim['shares_pct'][k]:.1f} % | {live['shares_pct'][k]:.1f} % |" for k in sim["shares_pct"]]
    return lines, missed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_slice_args(ap)
    ap.add_argument("--app", choices=sorted(APPS), default="imagenet")
    ap.add_argument("--records-dir", help="also write each slice's live requests (due s, backend, target, "
                    "latency ms, cold start) to DIR/live-START.json, and the decision logs of both sides to DIR")
    ap.add_argument("--slices", help="START:DURATION:RATE_SCALE[,...] in trace seconds (default: the two "
                    f"slices {', '.join(':'.join(map(str, s)) for s in DEFAULT_SLICES)})")
    args = ap.parse_args()
    if args.slices:
        try:
            slices = [tuple(t(x) for t, x in zip((int, int, float), part.split(":"), strict=True))
                      for part in args.slices.split(",")]
        except ValueError:
            print(f"--slices: expected START:DURATION:RATE_SCALE[,...], got {args.slices!r}", file=sys.stderr)
            return 2
    elif any(a.startswith(("--start-s", "--duration-s", "--rate-scale")) for a in sys.argv[1:]):
        slices = [(args.start_s, args.duration_s, args.rate_scale)]
    else:
        slices = list(DEFAULT_SLICES)
    if args.short:
        slices = [(s, 240, r) for s, _, r in slices]
    os.environ.setdefault("HYBRIDSERVE_CACHE", os.path.join(tempfile.gettempdir(), "hybridserve-test-cache"))
    outs = [run_slice(args.app, s, d, r, args.speedup, args.records_dir) for s, d, r in slices]
    name, _, slo_ms, _ = APPS[args.app]
    fleet = (f"the head as a standing {HEAD_TYPE} VM (billed from the start, never terminated, its capacity split "
             "over its variants by their work in the last interval), at most one local.small VM (10 s boot) on top"
             if app_has_head(args.app) else
             "no standing head (`head_instance_type: null`: the catalog's batched capacity of one local.small is "
             "more than this machine can send, so with it no VM would be bought), at most one local.small VM "
             "(10 s emulated boot), functions priced at 7.5x AWS's per-request fee so a VM pays from a few requests/s")
    body = [f"App `{name}` (SLO {slo_ms:g} ms), policy `hybrid`, speedup x{args.speedup:g}. Same fleet on both sides: "
            f"{fleet}; the plan's routing table live (targets weighted by planned capacity, the planned batch, the "
            "spill rule and budget on the simulator's fluid queue); the policy's selector on both sides. Same "
            "catalog: the daemon's, copied while it ran. Gap: relative to the larger of the two for p95 and cost; "
            f"in absolute percentage points for the SLO violation percentage, met at <= {VIOLATION_GOAL_PP:g} pp. "
            "Command: `.venv/bin/python bench/live_fidelity.py" + (f" --app {args.app}" if args.app != "imagenet"
                                                                   else "") + "`.", ""]
    all_missed = []
    for out in outs:
        start_s, duration_s, rate, speed = out["slice"]
        lines, missed = slice_table(out)
        all_missed += [f"{m} (slice {start_s})" for m in missed]
        vms = [e.split(" ", 1)[1] for e in out["events"] if " serves " in e or "launch " in e]
        body += [f"**Slice WITS [{start_s}, {start_s + duration_s}) s, rate x{rate:g}** "
                 f"({int(out['counts'].sum()):,} requests over {len(out['counts'])} wall seconds; live VM launch "
                 f"to serving {out['time_to_serve_s'] or 0:.0f} s, the simulator's VMs boot that long; the loop ran "
                 f"{out['idle_s']} s idle before the load, replayed as quiet seconds in the simulator; batch-1 service "
                 f"on {HEAD_TYPE} through proxy and router {json.dumps(out['service_ms'])} ms; function cold start "
                 f"(catalog, plus `container_init_ms` 800 ms in the simulator) {json.dumps(out['cold_ms'])} ms).", "",
                 *lines, "",
                 f"Live: variants {json.dumps(out['live']['variants'])} (simulated: "
                 f"{json.dumps(out['sim']['variants'])}), errors {json.dumps(out['errors'])}; VM events: "
                 f"{'; '.join(vms) or 'none'}.", ""]
    body += [("Goal met on every measure of every slice." if not all_missed else
              f"Goal NOT met on: {', '.join(all_missed)}. Why: see the notes below."), "",
             READING, "", NOTES, "", load_note()]
    write_section("live-fidelity", "Live: simulator vs live system on the same slices", "\n".join(body))
    write_section("live-promtool", "Live: `promtool check metrics` of a live /metrics page", promtool_report(outs[-1]))
    return 0


def promtool_report(out: dict) -> str:
    """`promtool check metrics` over the last slice's /metrics page (taken at its end), or, where
    promtool is not installed, prometheus_client's parser plus the base-unit naming rules."""
    import re
    import subprocess

    from prometheus_client.parser import text_string_to_metric_families

    page = out["metrics_page"]
    fams = list(text_string_to_metric_families(page))
    names = sorted(f.name for f in fams if f.name.startswith("hybridserve_"))
    bad = [n for n in names if re.search(r"_(ms|mb|per_s)(_|$)", n)]
    tool = shutil.which("promtool")
    if tool:
        version = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
        r = subprocess.run([tool, "check", "metrics"], input=page, capture_output=True, text=True, timeout=60)
        verdict = (f"`promtool check metrics` ({version}): exit {r.returncode}, "
                   + ("no problems reported." if r.returncode == 0 and not (r.stdout + r.stderr).strip()
                      else "reported:\n\n```\n" + (r.stdout + r.stderr).strip() + "\n```"))
    else:
        verdict = "promtool is not installed here: checked with prometheus_client's parser and the naming rules only."
    return "\n".join([
        f"The daemon's /metrics page at the end of slice WITS {out['slice'][0]} ({len(page):,} bytes, "
        f"{len(names)} hybridserve families), piped to promtool:", "", verdict, "",
        f"Names with a non-base unit (`_ms`, `_mb`, `_per_s`): {', '.join(bad) or 'none'}. Families: "
        + ", ".join(f"`{n}`" for n in names) + ".",
        "", "Command: `.venv/bin/python bench/live_fidelity.py` (the same run as live-fidelity)."])


READING = (
    "**Reading (runs of 2026-12-04, quiet machine, load average 0.0 before).** The mechanisms fire on both "
    "sides in both slices: one local.small VM launched and serving 24 s after its launch, functions with their "
    "cold starts (3 live, 3 simulated), the selector on mobilenet (99.6 % live, 100 % simulated). Met on both "
    "slices: SLO violations (0.00 pp), cost (10 % and 1 %), p95 (11 % and 14 %). The VM path is now timed at "
    "start on a probe replica on a Ray worker node (`controller/live/live_catalog.py`, `measure_vm_path_ms`) and added to "
    "procured types' rows: VM p95 agrees within 8 % and 13 %, where before it it missed by 22-26 %. Shares: "
    "within 2 points in the second slice; in the first the live policy bought its VM 30 trace seconds (six "
    "ticks) before the simulated one (decision log: near-identical arrivals, but the live selector explored "
    "squeezenet and resnet18 on a few requests and its functions reported their measured 17-19 ms compute where "
    "the simulator's report the catalog row), so live VMs served 89 % against 62 % simulated and the VM-$ gap "
    "is 30 %, offset in the total by the functions'. In an earlier run on a busy machine (other jobs on both "
    "cores) the first slice's p95 missed (27 %): the live figures, not the simulated, move with the load. Known "
    "gap: function rows still carry the head path's overhead (a simulated warm call ~63 ms, a live one's compute "
    "17-19 ms plus its invoke hop), so simulated function latencies are pessimistic.")


NOTES = (
    "What makes the two sides comparable (issues #11, #20): (1) one selection path: the live router selects "
    "every app request with the policy's own selector (`policy.selector()`, handed over by the control loop, its "
    "learned state loaded back into the policy every tick), fed the same outcomes as the simulator's; (2) the "
    "plan is the router's routing table: per variant the head (at its share) and each procured VM weighted by "
    "planned capacity, the planned batch size, and the simulator's spill rule on its own fluid queue (backlog "
    "/ mu against `max_vm_wait_ms`); (3) where the head is a standing VM (`--app digits`), on both sides, its "
    "capacity counted once across its variants (split by their work in the last interval), billed from the "
    "start, never terminated; "
    "(4) the simulator plans and serves with the daemon's own catalog, whose service times are this machine's "
    "through the HTTP proxy and router measured at start, plus the spread of those samples "
    "(`simulator.vm_latency_jitter_ms`); (5) both start cold (`warm_start: false`) without a warm pool. What "
    "still differs, and moves the figures when a goal is missed: (a) this machine has 2 cores shared by the "
    "proxy, the router with the head's in-process replicas, a procured VM's Ray node, the function processes, "
    "the load generator and other engineers' jobs, while the simulator gives each VM and function the CPU its "
    "catalog row was measured with: under a burst the live service times stretch (p95); (b) a live function "
    "cold start is a real process start (interpreter, mxnet import, weights) under a CPU quota on that loaded "
    "machine, the simulator's the catalog's `cold_start_ms` + `container_init_ms`; (c) a live VM serves only "
    "once its node has joined and its Serve replica has loaded the model (~25-30 s after the launch here), the "
    "simulator's after its emulated boot; (d) the head's share follows the last interval's work on both sides, "
    "but live its in-process variants take its CPU as they come; (e) a spilled request the function tier "
    "throttles (its concurrency limit) queues live at a VM target, the head when no planned VM serves yet "
    "(the `head` share of the `imagenet` slices), where the simulator drops it, and live function calls on this "
    "machine take far longer than their catalog rows, so they throttle where the simulator's do not.")


if __name__ == "__main__":
    sys.exit(main())
