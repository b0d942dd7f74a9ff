"""The catalog's compute figures: what this machine measured, what the derived AWS catalog claims,
and where the two overlap.

Run: .venv/bin/python bench/catalog_compute.py [--concurrency-check]

Reads configs/catalog/measured/profile_cells.csv (hybridserve profile, see
configs/catalog/derive_catalog.py) and the catalogs under configs/catalog and configs/catalog/local,
and writes one BENCHMARKS.md section:
- FLOP/s achieved per vCPU per model and runtime, the batching gain per batch size and the
  1 -> 2 vCPU scaling, with the load average the cells were taken at;
- the derived rule against measurements it did not use: local functions at a quarter and a half
  vCPU (cgroup quota), and with --concurrency-check two single-thread batches at once on the two
  vCPUs of local.medium (one fresh worker process each, as the profiler runs them);
- the compute each catalog's rows claim against their hardware ceilings;
- the fleet each trace needs at its peak (and at x10), on the cheapest VM type per request.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from bench._report import write_section  # noqa: E402
from controller.catalog import Catalog  # noqa: E402
from controller.compute import function_row_gflops_per_vcpu, function_vcpus, vm_row_gflops_per_vcpu  # noqa: E402
from controller.profiler.catalog_files import CONCURRENT_SLOWDOWN, cell_latency_ms  # noqa: E402
from controller.profiler.worker import MARKER  # noqa: E402

CELLS = os.path.join(ROOT, "configs", "catalog", "measured", "profile_cells.csv")
GFLOPS = {"squeezenet": 1.65, "mobilenet": 1.14, "resnet18": 3.63, "resnet50": 7.72, "inception": 11.45, "vgg16": 30.95}


def _cells():
    with open(CELLS, newline="") as fh:
        return list(csv.DictReader(fh))


def measured_table(cells) -> str:
    by = defaultdict(dict)
    loads = []
    for r in cells:
        by[(r["model"], r["runtime"])][(float(r["cpu_share"]), int(r["batch_size"]))] = cell_latency_ms(r)
        if r.get("load_avg_1m"):
            loads.append(float(r["load_avg_1m"]))
    lines = ["| model | runtime | GFLOP/image | b1 ms (1 vCPU) | GFLOP/s per vCPU b1 | best b (GFLOP/s) | "
             "gain b2 | b4 | b8 | b16 | b32 | 1->2 vCPU b1 | b8 | b32 |", "|---" * 14 + "|"]
    for (m, rt), c in sorted(by.items()):
        if (1.0, 1) not in c or m not in GFLOPS:
            continue
        g = GFLOPS[m]
        t1 = c[(1.0, 1)]
        tput = {b: b / c[(1.0, b)] for s, b in c if s == 1.0}
        best = max(tput, key=tput.get)
        gain = [f"{tput[b] / tput[1]:.2f}" if b in tput else "-" for b in (2, 4, 8, 16, 32)]
        scale = [f"{c[(1.0, b)] / c[(2.0, b)]:.2f}" if (2.0, b) in c and (1.0, b) in c else "-" for b in (1, 8, 32)]
        lines.append(f"| {m} | {rt} | {g} | {t1:.1f} | {g * 1000 / t1:.0f} | {best} ({g * 1000 * tput[best]:.0f}) | "
                     + " | ".join(gain) + " | " + " | ".join(scale) + " |")
    lo, hi = (min(loads), max(loads)) if loads else (float("nan"), float("nan"))
    return "\n".join(lines) + f"\n\nLoad average (1 min) while the cells were taken: {lo:.2f} to {hi:.2f}.\n"


def quota_check(cells) -> str:
    """Rule 3 below one vCPU (T1 / share) against cells measured under that cgroup quota."""
    by = {(r["model"], r["runtime"], float(r["cpu_share"]), int(r["batch_size"])): cell_latency_ms(r) for r in cells}
    lines = ["| model | runtime | share | batch | measured ms | derived T1/share ms | derived / measured |",
             "|---|---|---|---|---|---|---|"]
    ratios = []
    for (m, rt, s, b), ms in sorted(by.items()):
        if s >= 1.0 or (m, rt, 1.0, b) not in by:
            continue
        d = by[(m, rt, 1.0, b)] / s
        ratios.append(d / ms)
        lines.append(f"| {m} | {rt} | {s:g} | {b} | {ms:.1f} | {d:.1f} | {d / ms:.2f} |")
    if not ratios:
        return "No cells below one vCPU yet.\n"
    r = np.array(ratios)
    return "\n".join(lines) + (f"\n\n{int((abs(r - 1) <= 0.2).sum())} of {r.size} cells within 20 %; derived / measured "
                               f"median {np.median(r):.2f}, from {r.min():.2f} to {r.max():.2f} (the quota's own "
                               "throttling costs what the 1 / share rule leaves out).\n")


def _worker_spec(model: str, batches: list[int], repeats: int) -> dict:
    return {"model": model, "runtime": "mxnet", "batches": batches, "repeats": repeats, "warmup": 1, "threads": 1,
            "time_scale": 1.0, "spawn_wall_s": time.time()}


def concurrency_check(cells, models: list[str], batches: list[int], repeats: int) -> str:
    """Two single-thread workers at once (local.medium's rule: one batch per vCPU) against the
    1-vCPU latency measured alone and local.medium's row (that latency x CONCURRENT_SLOWDOWN)."""
    solo = {(r["model"], int(r["batch_size"])): cell_latency_ms(r) for r in cells
            if r["runtime"] == "mxnet" and float(r["cpu_share"]) == 1.0}
    local = Catalog(os.path.join(ROOT, "configs", "catalog", "local"))
    env = dict(os.environ, OMP_NUM_THREADS="1", MXNET_CPU_WORKER_NTHREADS="1", HYBRIDSERVE_PROFILE_THREADS="1")
    lines = ["| model | batch | 1-vCPU p50 ms alone | 2 at once p50 ms | alone / 2 at once | local.medium row ms | "
             "row / measured |", "|---|---|---|---|---|---|---|"]
    for m in models:
        procs = [subprocess.Popen([sys.executable, "-m", "controller.profiler.worker",
                                   json.dumps(_worker_spec(m, batches, repeats))], cwd=ROOT, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for _ in range(2)]
        got = defaultdict(list)
        for p in procs:
            out, _ = p.communicate(timeout=1800)
            for line in out.splitlines():
                if line.startswith(MARKER):
                    ev = json.loads(line[len(MARKER):])
                    if ev["event"] == "cell":
                        got[ev["batch"]] += ev["latencies_ms"]
        for b in batches:
            if (m, b) in solo and got[b]:
                conc = float(np.percentile(got[b], 50))
                prof = local.vm_profile(m, "local.medium")
                row = prof.latency_at(b) if prof is not None else float("nan")
                lines.append(f"| {m} | {b} | {solo[(m, b)]:.1f} | {conc:.1f} | {solo[(m, b)] / conc:.2f} | {row:.1f} | "
                             f"{row / conc:.2f} |")
    alone = np.array([float(line.split("|")[5]) for line in lines[2:]])
    r = np.array([float(line.split("|")[7]) for line in lines[2:]])
    summary = (f"\nAlone over two at once: median {np.median(alone):.2f} ({alone.min():.2f}-{alone.max():.2f}; the "
               f"rows' factor CONCURRENT_SLOWDOWN = {CONCURRENT_SLOWDOWN:g} in controller/profiler/catalog_files.py "
               f"comes from this table). local.medium's rows: {int((abs(r - 1) <= 0.1).sum())} of {r.size} within "
               f"10 % of two at once, median row / measured {np.median(r):.2f}.\n" if r.size else "")
    return "\n".join(lines) + "\n" + summary


def ceiling_table(directory: str) -> str:
    cat = Catalog(directory)  # refuses a catalog over its ceilings
    worst_vm, worst_fn = (0.0, ""), (0.0, "")
    for (m, t), prof in cat._vm.items():
        g, it = cat.model(m).gflops_per_image, cat.instance_type(t)
        for b, ms, c in zip(prof.batch, prof.latency_ms, prof.concurrency):
            need = vm_row_gflops_per_vcpu(g, b, c, ms, it.vcpu) / it.ceiling_gflops_per_vcpu
            worst_vm = max(worst_vm, (need, f"{m} on {t} batch {int(b)}"))
    for m, prof in cat._fn.items():
        g = cat.model(m).gflops_per_image
        for b, (mem, lat) in prof.by_batch.items():
            for mm, ms in zip(mem, lat):
                need = function_row_gflops_per_vcpu(g, b, ms, function_vcpus(mm)) / cat.function_ceiling_gflops_per_vcpu
                worst_fn = max(worst_fn, (need, f"{m} at {int(mm)} MB batch {b}"))
    return (f"- `{os.path.relpath(directory, ROOT)}`: highest VM row at {100 * worst_vm[0]:.0f} % of its type's "
            f"ceiling ({worst_vm[1]}); highest function row at {100 * worst_fn[0]:.0f} % of the platform's "
            f"({worst_fn[1]}).\n")


def fleet_table(directory: str, slo_ms: float = 300.0, min_accuracy: float = 0.70) -> str:
    cat = Catalog(directory)
    types = [t for t in cat.instance_types if not t.startswith("local.")]
    best = None
    for m in cat.models_meeting(min_accuracy):
        for t in types:
            r = cat.vm_cost_per_request_usd(m.name, t, slo_ms)
            if r and (best is None or r[0] < best[0]):
                best = (r[0], m.name, t, r[1])
    _, m, t, b = best
    cap = cat.vm_profile(m, t).capacity_per_s(b)
    lines = [f"Cheapest VM per request at SLO {slo_ms:g} ms and floor {min_accuracy:.2f}: {m} on {t} at batch {b}, "
             f"{cap:.1f} requests/s per VM at full use.", "",
             "| trace | peak requests/s | VMs at peak | at x10 |", "|---|---|---|---|"]
    for name in ("wits", "berkeley"):
        with open(os.path.join(ROOT, "configs", "traces", f"{name}.csv")) as fh:
            peak = max(int(line.split(",")[1]) for line in fh.readlines()[1:])
        lines.append(f"| {name} | {peak:,} | {np.ceil(peak / cap):.0f} | {np.ceil(10 * peak / cap):.0f} |")
    return "\n".join(lines) + "\n"


OLD_REV = "b9515a7"  # the last commit with the catalog built from ../shared/profiles


def refusal_of_old_catalog(tmp: str) -> str:
    """The loader on the catalog this project shipped before: as it was (no FLOPs column), and
    with each model's FLOPs added (the first impossible row)."""
    os.makedirs(tmp, exist_ok=True)
    for f in ("models.csv", "instance_types.csv", "vm_latency.csv", "function_latency.csv"):
        text = subprocess.run(["git", "show", f"{OLD_REV}:configs/catalog/{f}"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout
        with open(os.path.join(tmp, f), "w") as fh:
            fh.write(text)
    out = []
    for step in ("as shipped", "with FLOPs per image added"):
        if step != "as shipped":
            with open(os.path.join(tmp, "models.csv"), newline="") as fh:
                rows = list(csv.DictReader(fh))
            with open(os.path.join(tmp, "models.csv"), "w", newline="") as fh:
                w = csv.DictWriter(fh, list(rows[0]) + ["gflops_per_image"])
                w.writeheader()
                w.writerows(dict(r, gflops_per_image=OLD_GFLOPS[r["model"]]) for r in rows)
        try:
            Catalog(tmp)
            out.append(f"- {step}: loaded (unexpected)")
        except Exception as e:  # the CatalogError line every command prints before exiting 2
            out.append(f"- {step}: `{type(e).__name__}: {e}`".replace(tmp, f"<{OLD_REV}>/configs/catalog"))
    return "\n".join(out) + "\n"


OLD_GFLOPS = {**GFLOPS, "caffenet": 1.45, "resnet200": 30.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency-check", action="store_true")
    ap.add_argument("--models", default="squeezenet,mobilenet,resnet18,resnet50,inception")
    ap.add_argument("--batches", default="1,4,8")
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    cells = _cells()
    peak = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "host_peak.py")], capture_output=True,
                          text=True, check=True).stdout.strip()
    body = ["### This machine's vCPU", "", f"Single-thread SGEMM (`bench/host_peak.py`): `{peak}`", "",
            "### Measured per-vCPU curves (7 timed calls per cell, the catalog's latency: the mean below one vCPU, the p50 from one up; gain = throughput at batch b over batch 1; 1->2 = the 1-vCPU time over the 2-vCPU time)", "", measured_table(cells),
            "### The rule below one vCPU against cgroup-quota cells", "", quota_check(cells)]
    if a.concurrency_check:
        body += ["### One single-thread batch per vCPU: two at once on this machine's two vCPUs", "",
                 concurrency_check(cells, a.models.split(","), [int(b) for b in a.batches.split(",")], a.repeats)]
    body += ["### The loader on the catalog shipped before", "", refusal_of_old_catalog("/tmp/hybridserve-old-catalog")]
    body += ["### Rows against their hardware ceilings (the loader refuses any over 100 %)", ""]
    body += [ceiling_table(os.path.join(ROOT, "configs", "catalog", d)) for d in ("", "local")]
    body += ["", "### The fleet each trace needs at its peak (derived AWS catalog)", "",
             fleet_table(os.path.join(ROOT, "configs", "catalog"))]
    text = "\n".join(body)
    print(text)
    write_section("catalog-compute", "Catalog: measured per-vCPU throughput and the derived AWS catalog", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
