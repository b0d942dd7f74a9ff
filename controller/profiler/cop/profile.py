"""Measure operators (and whole models) on this machine for COP; writes the operator-profile
catalog data under configs/catalog/operator_profiles/.

Each distinct operator-by-shape of the given models is run alone as a one-operator mxnet
symbol (its inputs bound to random arrays) at each batch size, and timed: the median of
`repeats` warm forward passes. Whole models are timed the way serving runs them (hybridized
gluon with a static cached graph) so the predictor can be checked and calibrated.

A CPU share is given to a worker process as Lambda gives it to a function: a cgroup CPU quota
(share x one CPU period, the same `CpuMemLimit` the local function provider uses) and
OMP_NUM_THREADS = max(1, round(share)). Where no cgroup hierarchy is writable only the thread
count follows the share, and the rows say `cpu_limit=threads`.

    python -m controller.profiler.cop.profile run --models squeezenet,resnet18 --batches 1,4,16 \
        --shares 0.5,1,2 --repeats 5
    python -m controller.profiler.cop.profile run --models '' --sweep-blocks 96 --shares 1,2   # synthetic shapes

`--sweep-blocks N` adds the operators of N synthetic blocks (controller.profiler.cop.sweep: shapes of no
model, rows tagged `sweep`, which every leave-one-model-out fold may use).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from controller.config import REPO_ROOT
from controller.profiler.cop.graph import OpGraph, OpNode, from_gluon
from controller.profiler.cop.sweep import KINDS

PROFILE_DIR = os.path.join(REPO_ROOT, "configs", "catalog", "operator_profiles")
OP_FIELDS = ["op_key", "op", "op_class", "flops_per_sample", "batch_size", "cpu_share", "latency_ms", "min_ms",
             "cpu_ms", "repeats", "models", "cpu_limit"]
MODEL_FIELDS = ["model", "batch_size", "cpu_share", "latency_ms", "min_ms", "cpu_ms", "repeats", "num_ops", "cpu_limit"]


# --- timing (runs inside the worker, under its CPU share) ----------------------------------------
def one_op_symbol(node: OpNode):
    """A symbol holding `node` alone, each input a fresh variable (in0, in1, ...)."""
    import mxnet as mx

    n_in = len(node.in_shapes)
    nodes = [{"op": "null", "name": f"in{i}", "inputs": []} for i in range(n_in)]
    me = json.loads(node.node_json) if node.node_json else {"op": node.op, "attrs": dict(node.attrs)}
    me.update(name="op", inputs=[[i, 0, 0] for i in range(n_in)])
    nodes.append(me)
    g = {"nodes": nodes, "arg_nodes": list(range(n_in)), "node_row_ptr": list(range(n_in + 2)),
         "heads": [[n_in, 0, 0]], "attrs": {"mxnet_version": ["int", 10901]}}
    return mx.sym.load_json(json.dumps(g))


def _median_ms(fn, repeats: int, warmup: int, budget_s: float, chunk_s: float = 0.0) -> tuple[float, float, int, float]:
    """(median, minimum, runs, median CPU) of the time per run of `fn` over up to `repeats`
    timings after `warmup`; stops early (at least 3 timings) once `budget_s` is spent.

    Each timing is the mean over a chunk of back-to-back runs lasting at least `chunk_s`.
    Under a CPU quota below one CPU, CFS lets the process run share x 100 ms per 100 ms period
    and then throttles it: one short operator is either not throttled at all or stalled for
    tens of ms, depending on the phase. A model made of many operators sees the average, so
    operators are timed over chunks spanning several periods (the mean of a chunk).
    The CPU figure is this process's CPU time per run (all its threads): other processes on a
    shared machine delay the wall clock but not it."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    cpu: list[float] = []
    singles: list[float] = []
    t_start = time.perf_counter()
    while len(times) < repeats:
        t0, c0 = time.perf_counter(), time.process_time()
        n = 0
        while True:
            t1 = time.perf_counter()
            fn()
            singles.append((time.perf_counter() - t1) * 1000.0)
            n += 1
            if time.perf_counter() - t0 >= chunk_s:
                break
        times.append((time.perf_counter() - t0) * 1000.0 / n)
        cpu.append((time.process_time() - c0) * 1000.0 / n)
        if len(times) >= 3 and time.perf_counter() - t_start > budget_s:
            break
    # the minimum is the robust figure on a shared machine (other processes only ever add
    # time); of chunk means when chunked, since single runs under a quota may dodge throttling
    return (statistics.median(times), min(times) if chunk_s > 0 else min(singles), len(singles),
            statistics.median(cpu))


def cpu_bound_ms(cpu_ms: float, wall_ms: float, share: float) -> float:
    """Latency from CPU time where one thread runs (share <= 1): CPU / share, the time a quota
    of `share` CPUs needs to deliver it. Above one CPU the threads' overlap is not known from
    CPU time, so the wall figure stands."""
    return cpu_ms / share if share <= 1.0 else wall_ms


def chunk_s_for(share: float) -> float:
    """Chunk length: two CFS periods (0.2 s) where the quota throttles (share < 1), else none."""
    return 0.2 if share < 1.0 else 0.0


def time_op(node: OpNode, batch: int, repeats: int = 5, warmup: int = 1, budget_s: float = 2.0,
            chunk_s: float = 0.0) -> tuple[float, float, int, float]:
    """(median ms, min ms, runs, median CPU ms) of one operator at `batch`, alone."""
    import mxnet as mx
    import numpy as np

    sym = one_op_symbol(node)
    shapes = {}
    for i, (shape, kind) in enumerate(zip(node.in_shapes, node.var_inputs)):
        shapes[f"in{i}"] = tuple(shape) if kind else (batch,) + tuple(shape)
    arg_names, aux_names = sym.list_arguments(), sym.list_auxiliary_states()
    rng = np.random.default_rng(0)
    args = [mx.nd.array(rng.uniform(-1, 1, shapes[n]).astype("float32")) for n in arg_names]
    # running variance must be positive; 0.5..1.5 keeps BatchNorm's output finite
    aux = [mx.nd.array(rng.uniform(0.5, 1.5, shapes[n]).astype("float32")) for n in aux_names]
    exe = sym.bind(ctx=mx.cpu(), args=args, aux_states=aux, grad_req="null")

    def run():
        exe.forward(is_train=False)
        exe.outputs[0].wait_to_read()

    return _median_ms(run, repeats, warmup, budget_s, chunk_s)


def time_model(variant: str, batch: int, repeats: int = 5, warmup: int = 1, budget_s: float = 20.0,
               chunk_s: float = 0.0) -> tuple[float, float, int, float]:
    """(median ms, min ms, runs, median CPU ms) of a whole model at `batch`, as serving runs it."""
    import mxnet as mx
    import numpy as np

    from serving.runtimes import spec_of
    from serving.runtimes.mxnet_runtime import build_net

    spec = spec_of(variant)
    net, _ = build_net(spec)
    x = mx.nd.array(np.random.default_rng(0).uniform(0, 1, (batch,) + spec.input_shape).astype("float32"))

    def run():
        net(x).wait_to_read()

    return _median_ms(run, repeats, warmup, budget_s, chunk_s)


def profile_here(graphs: list[OpGraph], batches: list[int], share: float, cpu_limit: str, repeats: int,
                 with_models: bool = True) -> tuple[list[dict], list[dict]]:
    """Op rows and model rows measured in this process (whatever CPU it has been given)."""
    seen: dict[str, tuple[OpNode, list[str]]] = {}
    for g in graphs:
        for n in g.nodes:
            if n.key not in seen:
                seen[n.key] = (n, [])
            if g.model not in seen[n.key][1]:
                seen[n.key][1].append(g.model)
    op_rows, model_rows = [], []
    for b in batches:
        for key, (node, models) in seen.items():
            ms, lo, k, c = time_op(node, b, repeats, chunk_s=chunk_s_for(share))
            op_rows.append(dict(op_key=key, op=node.op, op_class=node.op_class,
                                flops_per_sample=f"{node.flops_per_sample:.0f}", batch_size=b,
                                cpu_share=share, latency_ms=f"{ms:.4f}", min_ms=f"{lo:.4f}",
                                cpu_ms=f"{cpu_bound_ms(c, ms, share):.4f}", repeats=k, models=";".join(models),
                                cpu_limit=cpu_limit))
        if with_models:
            for g in graphs:
                ms, lo, k, c = time_model(g.model, b, repeats, chunk_s=chunk_s_for(share))
                model_rows.append(dict(model=g.model, batch_size=b, cpu_share=share, latency_ms=f"{ms:.3f}",
                                       min_ms=f"{lo:.3f}", cpu_ms=f"{cpu_bound_ms(c, ms, share):.3f}",
                                       repeats=k, num_ops=len(g.nodes), cpu_limit=cpu_limit))
    return op_rows, model_rows


# --- the parent: one worker process per CPU share -------------------------------------------------
def _worker(args) -> None:
    graphs = [from_gluon(m) for m in args.models.split(",") if m]
    if args.sweep_blocks:
        from controller.profiler.cop.sweep import sweep_graphs

        graphs += sweep_graphs(args.sweep_blocks, args.sweep_seed, tuple(args.sweep_kinds.split(",")))
    ops, models = profile_here(graphs, [int(b) for b in args.batches.split(",")], float(args.share),
                               args.cpu_limit, args.repeats, not args.ops_only)
    with open(args.out, "w") as fh:
        json.dump({"ops": ops, "models": models}, fh)


def run_share(models: list[str], batches: list[int], share: float, repeats: int, ops_only: bool = False,
              sweep_blocks: int = 0, sweep_seed: int = 0, sweep_kinds: str = "") -> dict:
    """Profile in a child process limited to `share` CPUs; returns {"ops": rows, "models": rows}.
    sweep_blocks: also the operators of that many synthetic blocks (controller.profiler.cop.sweep)."""
    from procurement.providers.local import CpuMemLimit

    name = f"cop-{os.getpid()}-{str(share).replace('.', '_')}"
    # A generous memory limit: the profile is about CPU, not about fitting in memory.
    limit = CpuMemLimit.create(name, share, 16384)
    cpu_limit = f"cgroup-{limit.mode}" if limit.mode != "none" else "threads"
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, round(share))), MXNET_CPU_WORKER_NTHREADS="1")
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        out = tmp.name
    cmd = [sys.executable, "-m", "controller.profiler.cop.profile", "worker", "--models", ",".join(models),
           "--batches", ",".join(map(str, batches)), "--share", str(share), "--repeats", str(repeats),
           "--cpu-limit", cpu_limit, "--out", out, "--sweep-blocks", str(sweep_blocks), "--sweep-seed",
           str(sweep_seed), "--sweep-kinds", sweep_kinds or ",".join(KINDS)] + (["--ops-only"] if ops_only else [])

    def preexec():
        try:
            limit.join()
        except OSError:
            pass
    try:
        subprocess.run(cmd, env=env, cwd=REPO_ROOT, check=True, preexec_fn=preexec)
        with open(out) as fh:
            return json.load(fh)
    finally:
        limit.remove()
        os.unlink(out)


def merge_rows(path: str, fields: list[str], new_rows: list[dict], key_fields: tuple[str, ...]) -> None:
    """Write `new_rows` into the CSV at `path`, replacing rows with the same key."""
    rows: dict[tuple, dict] = {}
    if os.path.exists(path):
        with open(path, newline="") as fh:
            for r in csv.DictReader(fh):
                rows[tuple(str(r[k]) for k in key_fields)] = r
    for r in new_rows:
        rows[tuple(str(r[k]) for k in key_fields)] = r
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for k in sorted(rows):
            w.writerow({f: rows[k].get(f, "") for f in fields})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m controller.profiler.cop.profile", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="profile operators and models at each CPU share into the catalog")
    r.add_argument("--models", default="squeezenet,mobilenet,resnet18,resnet50,inception")
    r.add_argument("--batches", default="1,4,16")
    r.add_argument("--shares", default="0.5,1,2")
    r.add_argument("--repeats", type=int, default=5)
    r.add_argument("--out-dir", default=PROFILE_DIR)
    r.add_argument("--ops-only", action="store_true")
    r.add_argument("--sweep-blocks", type=int, default=0,
                   help="also profile the operators of N synthetic blocks (shapes of no model)")
    r.add_argument("--sweep-seed", type=int, default=0)
    r.add_argument("--sweep-kinds", default=",".join(KINDS),
                   help="block kinds of the sweep (controller.profiler.cop.sweep.KINDS)")
    w = sub.add_parser("worker")
    for a in ("--models", "--batches", "--share", "--cpu-limit", "--out"):
        w.add_argument(a, required=True)
    w.add_argument("--repeats", type=int, default=5)
    w.add_argument("--ops-only", action="store_true")
    w.add_argument("--sweep-blocks", type=int, default=0)
    w.add_argument("--sweep-seed", type=int, default=0)
    w.add_argument("--sweep-kinds", default=",".join(KINDS))
    args = p.parse_args(argv)
    if args.cmd == "worker":
        _worker(args)
        return 0
    models = [m for m in args.models.split(",") if m]
    batches = [int(b) for b in args.batches.split(",")]
    os.makedirs(args.out_dir, exist_ok=True)
    for share in (float(s) for s in args.shares.split(",")):
        t0 = time.perf_counter()
        res = run_share(models, batches, share, args.repeats, args.ops_only or not models, args.sweep_blocks,
                        args.sweep_seed, args.sweep_kinds)
        # Merge after each share, so an interrupted run keeps what it measured.
        merge_rows(os.path.join(args.out_dir, "op_latency.csv"), OP_FIELDS, res["ops"],
                   ("op_key", "batch_size", "cpu_share"))
        if res["models"]:
            merge_rows(os.path.join(args.out_dir, "model_latency.csv"), MODEL_FIELDS, res["models"],
                       ("model", "batch_size", "cpu_share"))
        print(f"share {share}: {len(res['ops'])} op rows, {len(res['models'])} model rows "
              f"in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
