"""AMPS-Inf partition plans (issue 13): for resnet50 and vgg16 at SLO 1 s and 3 s with function
memory capped at 1,024 and 3,008 MB, the least-cost plan vs the best single function, predicted
(Lambda-calibrated catalog latencies) and measured live on the embedded default: every
partition a local function worker process (`LocalFunctionProvider`: its own process, a cgroup
CPU quota in proportion to its memory and a memory limit, loading only its own blocks'
weights), intermediate tensors inline or through a local-directory object store; plus the
planner's optimality against brute force and its planning time.

    .venv/bin/python bench/partition_plans.py [--repeats 3] [--random-cases 100] [--short]

`--short`: two deployments (vgg16 split under 1,024 MB at SLO 3 s; resnet50 whole at 3,008 MB,
SLO 1 s), 2 requests each, 20 random planner cases.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from dataclasses import replace

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._report import write_section  # noqa: E402
from controller.catalog import load_catalog  # noqa: E402
from controller.config import REPO_ROOT, FunctionPlatformConfig  # noqa: E402
from controller.ledger import Ledger  # noqa: E402
from controller.layer_graph import load_layer_graph  # noqa: E402
from procurement.partition_planner import (MB, CostModel, PartitionLimits, TransferModel,  # noqa: E402
                                           best_single_function, brute_force_plan, estimate_partition,
                                           plan_partitions)
from procurement.providers.local import LocalFunctionProvider  # noqa: E402
from serving.partition.executor import ChainExecutor, PartitionedDeployment  # noqa: E402
from serving.partition.store import LocalDirObjectStore  # noqa: E402
from serving.partition.weights import export_partition_weights  # noqa: E402
from serving.runtimes import spec_of  # noqa: E402

GRAPHS = os.path.join(REPO_ROOT, "configs", "catalog", "model_graphs")
# Hops between local processes: a pipe instead of the invoke API, a local directory as the store.
LOCAL_TRANSFER = TransferModel(invoke_overhead_ms=2.0, payload_mb_per_s=200.0, store_request_ms=1.0,
                               store_mb_per_s=500.0)
MB_PER_VCPU = 1769  # LocalFunctionProvider's default, as Lambda: one vCPU per 1,769 MB
SCENARIOS = [(m, cap, slo) for m in ("resnet50", "vgg16") for cap in (1024, 3008) for slo in (1000, 3000)]
SHORT_SCENARIOS = [("vgg16", 1024, 3000), ("resnet50", 3008, 1000)]


def local_ms(model: str) -> list[float]:
    with open(os.path.join(GRAPHS, f"{model}.csv"), newline="") as fh:
        return [float(r["local_ms"]) for r in sorted(csv.DictReader(fh), key=lambda r: int(r["block"]))]


def local_hop_ms(graph, p, limits) -> tuple[float, float]:
    """(compute, latency) of one partition predicted for a local worker: the block latencies
    measured here at full CPU, slowed in proportion below one vCPU (the worker's cgroup quota is
    memory / 1,769 MB of a CPU), local transfer speeds."""
    slow = max(1.0, MB_PER_VCPU / p.memory_mb)
    g = graph.at_speed([ms * slow for ms in local_ms(graph.model)])
    e = estimate_partition(g, p.start, p.end, p.memory_mb, replace(limits, max_memory_mb=10240),
                           CostModel(transfer=LOCAL_TRANSFER))
    return e.compute_ms, e.latency_ms


def fmt_usd(x: float) -> str:
    return f"{x * 1e6:.2f}"


class LiveChains:
    """Partitioned deployments on local worker processes, measured; one deployment per distinct
    plan (identical plans across scenarios are measured once)."""

    def __init__(self, root: str, repeats: int, timeout_s: float = 900.0):
        self.store = LocalDirObjectStore(os.path.join(root, "store"))
        self.weights_dir = os.path.join(root, "weights")
        self.repeats, self.timeout_s = repeats, timeout_s
        self.fp = FunctionPlatformConfig()
        self._done: dict[str, dict] = {}

    def measure(self, plan, batch: np.ndarray) -> tuple[dict, bool]:
        """The measurements of `plan`'s deployment, and whether they were taken just now."""
        key = f"{plan.model} {plan.describe()}"
        fresh = key not in self._done
        if fresh:
            self._done[key] = self._measure(plan, batch)
        return self._done[key], fresh

    def objects_left(self) -> int:
        return len(self.store.list_keys())

    def _measure(self, plan, batch: np.ndarray) -> dict:
        dep = PartitionedDeployment.from_plan(plan)
        export_partition_weights(dep.variant, [(s, e) for s, e, _ in dep.partitions], self.weights_dir)
        provider = LocalFunctionProvider(keep_alive_s=3600.0, concurrency_limit=len(dep.partitions), worker_env={
            "HYBRIDSERVE_PARTITION_STORE": self.store.root, "HYBRIDSERVE_PARTITION_WEIGHTS": self.weights_dir})
        ex = ChainExecutor(provider, self.store, self.fp, Ledger(), timeout_s=self.timeout_s)
        try:
            ex.deploy(dep)
            cold = ex.infer(dep, batch)  # every hop starts its process and loads its blocks
            warm = [ex.infer(dep, batch) for _ in range(self.repeats)]
        except Exception as e:  # a worker killed at its memory limit, a timeout: say so in the table
            print(f"{plan.model} {plan.describe()}: {e}", flush=True)
            return {"error": str(e).splitlines()[0][:120]}
        finally:
            provider.close()
        hops = []
        for h in range(len(dep.partitions)):
            dur = [r.hops[h].duration_ms for r in warm]
            comp = [r.hops[h].compute_ms for r in warm]
            io = [r.hops[h].io_ms for r in warm]
            hops.append({"compute_ms": float(np.median(comp)), "io_ms": float(np.median(io)),
                         "invoke_ms": float(np.median(np.subtract(dur, np.add(comp, io)))),
                         "cold_ms": cold.hops[h].duration_ms, "load_ms": cold.hops[h].load_ms,
                         "param_mb": cold.hops[h].param_bytes / MB, "via_store": cold.hops[h].output_via_store})
        return {"latency_ms": float(np.median([r.latency_ms for r in warm])),
                "cost_usd": float(np.mean([r.cost_usd for r in warm])), "cold_latency_ms": cold.latency_ms,
                "hops": hops}


def scenario_rows(catalog, live: LiveChains, scenarios, fp) -> tuple[list[str], list[str]]:
    rows, hop_rows = [], []
    for model, cap, slo_ms in scenarios:
        graph = load_layer_graph(GRAPHS, model, catalog.model(model).cold_start_ms)
        batch = np.random.default_rng(0).standard_normal((1,) + spec_of(model).input_shape).astype(np.float32)
        limits = PartitionLimits(max_partitions=4, max_memory_mb=cap)
        t0 = time.perf_counter()
        plan = plan_partitions(graph, slo_ms, limits, CostModel(fp=fp))
        plan_ms = (time.perf_counter() - t0) * 1000.0
        single = best_single_function(graph, slo_ms, limits, CostModel(fp=fp))
        cells = [model, f"{cap}", f"{slo_ms / 1000:.0f} s"]
        for p in (plan, single):
            if p is None:
                cells += ["none feasible", "", "", "", "", "", ""]
                continue
            m, fresh = live.measure(p, batch)
            local = sum(local_hop_ms(graph, e, limits)[1] for e in p.partitions)
            head = [f"`{p.describe()}`", f"{p.latency_ms:.0f}", fmt_usd(p.cost_usd), f"{local:.0f}"]
            if "error" in m:
                cells += head + [f"failed: {m['error']}", "", ""]
                continue
            cells += head + [f"{m['latency_ms']:.0f}", fmt_usd(m["cost_usd"]), f"{m['cold_latency_ms']:.0f}"]
            for e, h in zip(p.partitions, m["hops"]) if fresh else ():
                hop_rows.append(f"| {model} | `{p.describe()}` | [{e.start},{e.end})@{e.memory_mb} | "
                                f"{h['param_mb']:.0f} | {e.footprint_mb:.0f} | {'store' if h['via_store'] else 'inline'} | "
                                f"{local_hop_ms(graph, e, limits)[0]:.0f} | {h['compute_ms']:.0f} | {h['io_ms']:.0f} | "
                                f"{h['invoke_ms']:.0f} | {h['load_ms']:.0f} | {h['cold_ms']:.0f} |")
        cells.append(f"{plan_ms:.0f}")
        rows.append("| " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    return rows, hop_rows


def optimality_rows(catalog, random_cases: int) -> tuple[list[str], int, int]:
    rows = []
    cases = [("squeezenet", 3, 3008, 1000), ("resnet50", 2, 3008, 1000), ("resnet50", 2, 1024, 3000),
             ("vgg16", 2, 3008, 3000), ("vgg16", 3, 1024, 3000)]
    for model, k, cap, slo_ms in cases:
        graph = load_layer_graph(GRAPHS, model, catalog.model(model).cold_start_ms)
        limits = PartitionLimits(max_partitions=k, max_memory_mb=cap)
        t0 = time.perf_counter()
        dp = plan_partitions(graph, slo_ms, limits)
        dp_ms = (time.perf_counter() - t0) * 1000.0
        t0 = time.perf_counter()
        bf = brute_force_plan(graph, slo_ms, limits)
        bf_ms = (time.perf_counter() - t0) * 1000.0
        same = (dp is None and bf is None) or (dp is not None and bf is not None
                                                and abs(dp.cost_usd - bf.cost_usd) <= 1e-12 * max(1.0, bf.cost_usd))
        rows.append(f"| {model} | {graph.num_blocks} | {k} | {cap} | {slo_ms / 1000:.0f} s | "
                    f"{fmt_usd(dp.cost_usd) if dp else 'none'} | {fmt_usd(bf.cost_usd) if bf else 'none'} | "
                    f"{'yes' if same else 'NO'} | {dp.labels_explored if dp else 0} | {bf.labels_explored if bf else 0} | "
                    f"{dp_ms:.0f} | {bf_ms:.0f} |")
        print(rows[-1], flush=True)
    # Random small chains (as in the unit tests): count agreements.
    sys.path.insert(0, os.path.join(REPO_ROOT, "tests", "unit", "partition"))
    from test_partition_planner import random_graph  # the same generator the tests check
    agree = 0
    rng = np.random.default_rng(42)
    for _ in range(random_cases):
        g = random_graph(rng, int(rng.integers(3, 8)))
        limits = PartitionLimits(max_partitions=int(rng.integers(1, 4)), max_memory_mb=int(rng.choice([1024, 3008])),
                                 tmp_storage_limit_mb=float(rng.choice([20, 512])))
        slo = float(rng.uniform(300, 3000))
        a, b = plan_partitions(g, slo, limits), brute_force_plan(g, slo, limits)
        agree += (a is None and b is None) or (a is not None and b is not None
                                               and abs(a.cost_usd - b.cost_usd) <= 1e-12)
    return rows, agree, random_cases


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="warm requests per deployment")
    ap.add_argument("--random-cases", type=int, default=100)
    ap.add_argument("--short", action="store_true", help="two deployments, 2 requests, 20 random cases")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    scenarios = SHORT_SCENARIOS if args.short else SCENARIOS
    repeats, random_cases = (2, 20) if args.short else (args.repeats, args.random_cases)
    catalog = load_catalog(os.path.join(REPO_ROOT, "configs", "catalog"))
    fp = FunctionPlatformConfig()
    with tempfile.TemporaryDirectory(prefix="hs-partition-bench-") as tmp:
        live = LiveChains(tmp, repeats)
        rows, hop_rows = scenario_rows(catalog, live, scenarios, fp)
        left = live.objects_left()
    opt_rows, agree, total = optimality_rows(catalog, random_cases)
    load = os.getloadavg()[0]
    body = "\n".join([
        "Plans minimise expected cost per request (warm ratio 1.0, K = 4, payload limit 6 MB, container-image",
        "deployment, /tmp 512 MB). *Predicted* latency and cost use the layer-graph catalog",
        "(`configs/catalog/model_graphs/`: block latencies measured here, scaled to each memory by the catalog's",
        "Lambda whole-model curve, 1/memory below its smallest profiled size).",
        "",
        "*Measured* is live on the embedded default: every partition is a local function worker process",
        "(`LocalFunctionProvider`, `serving/function_worker.py`) with a cgroup CPU quota of memory / 1,769 MB of",
        "a CPU and a memory limit of its memory size, loading only its own blocks' weights",
        "(`serving/partition/weights.py`); tensors travel inline through the worker's pipe or through a",
        "local-directory object store. A single function is the same: a one-partition chain. Measured latency",
        f"is the median of {repeats} warm requests after a cold one (*cold ms*: the first request, every process",
        "starting and loading its blocks); measured cost is the ledger's bill for those durations at the plan's",
        "memories. *Local pred.* is the plan predicted for these workers (the blocks' full-CPU latency measured",
        "here, slowed in proportion below one vCPU, local transfer speeds); the Lambda-calibrated prediction is",
        "not expected to match a process on this machine. Costs in micro-USD per request.",
        "",
        f"**The machine is shared** (2 cores, other engineers' jobs running; 1-minute load average {load:.1f} at the",
        "end of this run), so measured latencies are inflated and noisy.",
        "",
        "| model | cap MB | SLO | plan | pred. ms | pred. µ$ | local pred. ms | measured ms | measured µ$ | cold ms "
        "| single fn | pred. ms | pred. µ$ | local pred. ms | measured ms | measured µ$ | cold ms | planning ms |",
        "|" + "---|" * 18,
        *rows,
        "",
        f"Objects left in the store after all runs: {left}.",
        "",
        "Reading it: under the 1,024 MB cap vgg16 (528 MB of weights) runs only as a chain of three functions;",
        "its largest, fc6 alone (392 MB of weights), loads and serves within its process's 1,024 MB memory",
        "limit, which is what the chain is for. In every other scenario the cheapest plan is one function, so",
        "the planner does not split it. *Local pred.* rests on block latencies profiled once on this shared",
        "machine, and a worker's CPU quota is a share of a CPU other jobs use too, so measured and predicted",
        "differ in both directions with the load at profiling and at run time (compare the hop compute times",
        "row by row); above 1,769 MB a worker also gets a second thread, which the prediction does not credit.",
        "Measured cost is the ledger's bill for the measured durations.",
        "",
        "Per hop, each distinct deployment once (warm medians; *params MB*: the weights its worker loaded;",
        "*footprint MB*: the planner's; *io*: reading and writing tensors inside the function; *invoke*: the rest",
        "of the hop's duration, pipe and encoding; *load*: building its blocks in the cold request; *cold hop*: the",
        "cold request's hop duration, process start included):",
        "",
        "| model | deployment | hop | params MB | footprint MB | output | local pred. compute ms | compute ms "
        "| io ms | invoke ms | load ms | cold hop ms |",
        "|" + "---|" * 12,
        *hop_rows,
        "",
        "Planner (label setting over split points) vs brute force (every split and memory assignment):",
        "",
        "| model | blocks | K | cap MB | SLO | DP µ$ | brute µ$ | equal | DP labels | brute plans | DP ms | brute ms |",
        "|" + "---|" * 12,
        *opt_rows,
        "",
        f"Random small chains (3-7 blocks, K 1-3, random limits): DP == brute force in {agree}/{total}.",
    ])
    print(body)
    if not args.no_write:
        write_section("partition-plans", "Model partitioning across functions (AMPS-Inf)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
