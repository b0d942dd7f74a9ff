"""AMPS-Inf partition planner: split a model into k <= K contiguous partitions, one function
each, and pick every function's memory, at the least expected cost per request within the SLO.

Pure: catalog data in (a `LayerGraph`, controller/layer_graph.py, which the catalog reads), a
`PartitionPlan` out; no clock, no RNG, no I/O.

The model is a sequence of blocks (configs/catalog/model_graphs/<model>.csv). A partition is
a block range [start, end) served by one function of memory m. Its estimate depends only on
(start, end, m), because the tensors crossing its borders are fixed by the split points:

- latency  = invoke overhead + inline payload transfer (in and out, through the invoke API)
           + compute (sum of its blocks' latency at m)
           + object-store I/O (GET of its input, PUT of its output, when a tensor is larger
             than the invocation payload limit)
           + (1 - warm_ratio) * cold start (container init + loading its share of the weights)
- cost     = billed duration (compute + store I/O + expected cold start when INIT is billed)
             x m GB x price per GB-s + price per invocation + store PUT/GET request prices
- feasible when m >= footprint (runtime + 2 x its weights while loading + its activations +
  border tensors),
  package + its weights <= deployment limit, border tensors going through the store (plus its
  weights when they are fetched to /tmp, as AMPS-Inf does) <= the temporary storage limit.

A plan's latency and cost are sums over its partitions, so the problem is a resource-
constrained shortest path over split points 0..n: `plan_partitions` solves it exactly by
label setting (per split point and partition count, keep every (cost, latency) pair no other
pair dominates; extending a dominated pair can never give a better plan), pruned by lower
bounds on the cost and latency still to come. `brute_force_plan`
enumerates every split and memory assignment; the tests check the two agree.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

from controller.config import FunctionPlatformConfig
from controller.layer_graph import LayerGraph

MB = 1024 * 1024
LAMBDA_PAYLOAD_LIMIT_BYTES = 6 * MB
NPY_HEADER_BYTES = 128  # np.save header of a float32 array (version 1.0, padded to 64-byte multiple)
PAYLOAD_ENVELOPE_BYTES = 1024  # JSON keys, request id, shape, dtype around the base64 tensor
# While a function loads its weights it holds them twice (the loaded or initialised arrays and
# the parameters they are copied into). With it, base + 2 x weights + activations is within
# 6-17% of the peak RSS measured here (squeezenet 286 vs 293 MB, resnet50 564 vs 532, inception
# 536 vs 527, vgg16 1396 vs 1688 MB; the measured peaks include the profiler's extra buffers).
WEIGHT_LOAD_FACTOR = 2.0


def encoded_payload_bytes(tensor_bytes: int) -> int:
    """Size of an invocation payload carrying a tensor inline: npy bytes base64-encoded (4 per
    3) in a JSON envelope. A 4.5 MiB tensor needs ~6.0 MiB of payload."""
    return 4 * math.ceil((tensor_bytes + NPY_HEADER_BYTES) / 3) + PAYLOAD_ENVELOPE_BYTES


def fits_payload(tensor_bytes: int, payload_limit_bytes: int) -> bool:
    return encoded_payload_bytes(tensor_bytes) <= payload_limit_bytes


@dataclass(frozen=True)
class PartitionLimits:
    """The function platform's limits and the search bounds (Lambda defaults)."""

    max_partitions: int = 4                 # K: most functions chained per request
    max_memory_mb: int = 10240              # cap on any function's memory
    deployment_limit_mb: float = 10240.0    # container image limit (zip: 250 MB unzipped)
    package_mb: float = 0.0                 # the function's code and libraries, without weights
    tmp_storage_limit_mb: float = 512.0     # /tmp (Lambda default ephemeral storage)
    weights_in_tmp: bool = False            # AMPS-Inf: weights fetched to /tmp (zip deployments);
                                            # hybridserve's container image carries them instead
    payload_limit_bytes: int = LAMBDA_PAYLOAD_LIMIT_BYTES


@dataclass(frozen=True)
class TransferModel:
    """How long moving an intermediate tensor takes (Lambda in one region, S3 as the store)."""

    invoke_overhead_ms: float = 15.0        # invoke API round trip per hop
    payload_mb_per_s: float = 50.0          # tensor bytes through request/response payloads
    store_request_ms: float = 25.0          # one GET or PUT round trip to the object store
    store_mb_per_s: float = 80.0            # object-store throughput of one function


@dataclass(frozen=True)
class StorePrices:
    """Object-store request prices (S3 Standard, us-east-1). Storage itself is not charged: a
    tensor lives for about one hop (~6 MB for ~1 s is ~2e-12 USD at 0.023 USD/GB-month)."""

    put_usd: float = 0.005 / 1000
    get_usd: float = 0.0004 / 1000


@dataclass(frozen=True)
class PartitionEstimate:
    start: int
    end: int
    memory_mb: int
    compute_ms: float
    latency_ms: float          # expected contribution to the end-to-end latency
    billed_ms: float           # expected billed duration
    cost_usd: float            # expected cost per request
    footprint_mb: float
    weights_mb: float
    in_via_store: bool
    out_via_store: bool


@dataclass(frozen=True)
class PartitionPlan:
    model: str
    slo_ms: float
    partitions: tuple[PartitionEstimate, ...]
    latency_ms: float
    cost_usd: float
    labels_explored: int = 0   # size of the search, for reporting

    @property
    def num_partitions(self) -> int:
        return len(self.partitions)

    def describe(self) -> str:
        """e.g. "[0,9)@1024 + [9,19)@2048" (no "|": it goes into markdown tables)."""
        return " + ".join(f"[{p.start},{p.end})@{p.memory_mb}" for p in self.partitions)


@dataclass(frozen=True)
class CostModel:
    fp: FunctionPlatformConfig = FunctionPlatformConfig()
    transfer: TransferModel = TransferModel()
    prices: StorePrices = StorePrices()
    warm_ratio: float = 1.0    # expected fraction of invocations that find a warm instance


def memory_choices(graph: LayerGraph, limits: PartitionLimits, fp: FunctionPlatformConfig) -> list[int]:
    cap = min(limits.max_memory_mb, fp.max_memory_mb)
    return [m for m in graph.memory_grid_mb if fp.min_memory_mb <= m <= cap]


def estimate_partition(graph: LayerGraph, start: int, end: int, memory_mb: int, limits: PartitionLimits,
                       cm: CostModel) -> PartitionEstimate | None:
    """The partition [start, end) on a function of `memory_mb`, or None when it breaks a limit."""
    n = graph.num_blocks
    mi = graph.memory_grid_mb.index(memory_mb)
    weights_b = sum(graph.param_bytes[start:end])
    in_b = graph.input_bytes if start == 0 else graph.output_bytes[start - 1]
    out_b = graph.output_bytes[end - 1]
    # The request's input and the final logits travel with the client request, never the store.
    in_store = start > 0 and not fits_payload(in_b, limits.payload_limit_bytes)
    out_store = end < n and not fits_payload(out_b, limits.payload_limit_bytes)
    weights_mb = weights_b / MB
    footprint_mb = graph.runtime_base_mb + (WEIGHT_LOAD_FACTOR * weights_b + sum(graph.activation_bytes[start:end]) + in_b + out_b) / MB
    tmp_mb = (weights_mb if limits.weights_in_tmp else 0.0) + (in_b / MB if in_store else 0.0) + (out_b / MB if out_store else 0.0)
    if (memory_mb < footprint_mb or limits.package_mb + weights_mb > limits.deployment_limit_mb
            or tmp_mb > limits.tmp_storage_limit_mb):
        return None
    t = cm.transfer
    compute_ms = sum(graph.latency_ms[b][mi] for b in range(start, end))
    store_ms = sum(t.store_request_ms + nbytes / MB / t.store_mb_per_s * 1000.0
                   for nbytes, via in ((in_b, in_store), (out_b, out_store)) if via)
    inline_ms = sum(encoded_payload_bytes(nbytes) / MB / t.payload_mb_per_s * 1000.0
                    for nbytes, via in ((in_b, in_store), (out_b, out_store)) if not via)
    share = weights_b / max(1, sum(graph.param_bytes))
    cold_ms = (1.0 - cm.warm_ratio) * (cm.fp.container_init_ms + graph.cold_start_ms * share)
    billed_ms = compute_ms + store_ms + (cold_ms if cm.fp.bill_init else 0.0)
    latency_ms = t.invoke_overhead_ms + inline_ms + compute_ms + store_ms + cold_ms
    cost = (billed_ms / 1000.0 * memory_mb / 1024.0 * cm.fp.price_usd_per_gb_s + cm.fp.price_usd_per_request
            + (cm.prices.put_usd if out_store else 0.0) + (cm.prices.get_usd if in_store else 0.0))
    return PartitionEstimate(start, end, memory_mb, compute_ms, latency_ms, billed_ms, cost, footprint_mb,
                             weights_mb, in_store, out_store)


def _edges(graph: LayerGraph, limits: PartitionLimits, cm: CostModel) -> dict[int, list[PartitionEstimate]]:
    """Every feasible partition, grouped by its start."""
    mems = memory_choices(graph, limits, cm.fp)
    out: dict[int, list[PartitionEstimate]] = {i: [] for i in range(graph.num_blocks)}
    for i in range(graph.num_blocks):
        for j in range(i + 1, graph.num_blocks + 1):
            for m in mems:
                e = estimate_partition(graph, i, j, m, limits, cm)
                if e is not None:
                    out[i].append(e)
    return out


def _plan_of(graph: LayerGraph, slo_ms: float, parts: list[PartitionEstimate], explored: int) -> PartitionPlan:
    return PartitionPlan(graph.model, slo_ms, tuple(parts), sum(p.latency_ms for p in parts),
                         sum(p.cost_usd for p in parts), explored)


def _better(a: tuple, b: tuple | None) -> bool:
    """Order of plans: cost, then latency, then fewer partitions (ties broken deterministically)."""
    return b is None or a < b


def plan_partitions(graph: LayerGraph, slo_ms: float, limits: PartitionLimits = PartitionLimits(),
                    cm: CostModel = CostModel()) -> PartitionPlan | None:
    """The least expected-cost plan within the SLO, or None when no plan meets every limit.

    Labels at split point i with p partitions so far: (cost, latency, parts). A label is dropped
    when another at the same (i, p) has cost and latency both no worse: any completion of the
    dropped one completes the other at no more cost and no more latency. (p is part of the key
    because fewer partitions leave more room under K.)
    """
    edges = _edges(graph, limits, cm)
    n, kmax = graph.num_blocks, limits.max_partitions
    # Bounds that keep the search exact and small (A*-style): the least cost and the least
    # latency of finishing from each split point (shortest paths backwards, any number of
    # partitions, no SLO), and the cheapest plan found so far (first the single function).
    # A label whose cost plus the least cost to finish exceeds that plan's, or whose latency plus
    # the least latency to finish exceeds the SLO, has no completion worth keeping.
    lb_cost, lb_lat = [math.inf] * (n + 1), [math.inf] * (n + 1)
    lb_cost[n] = lb_lat[n] = 0.0
    for i in reversed(range(n)):
        for e in edges[i]:
            lb_cost[i] = min(lb_cost[i], e.cost_usd + lb_cost[e.end])
            lb_lat[i] = min(lb_lat[i], e.latency_ms + lb_lat[e.end])
    incumbent = min((e.cost_usd for e in edges.get(0, []) if e.end == n and e.latency_ms <= slo_ms + 1e-9),
                    default=math.inf)
    labels: dict[tuple[int, int], list[tuple[float, float, tuple]]] = {(0, 0): [(0.0, 0.0, ())]}
    explored = 0
    for i in range(n):
        for p in range(kmax):
            for cost, lat, parts in labels.get((i, p), []):
                for e in edges[i]:
                    new_lat, new_cost = lat + e.latency_ms, cost + e.cost_usd
                    if (new_lat + lb_lat[e.end] > slo_ms + 1e-9
                            or new_cost + lb_cost[e.end] > incumbent + 1e-15 * max(1.0, incumbent)):
                        continue
                    explored += 1
                    if e.end == n:
                        incumbent = min(incumbent, new_cost)
                    _insert(labels.setdefault((e.end, p + 1), []), (new_cost, new_lat, parts + (e,)))
    best = None
    for p in range(1, kmax + 1):
        for cost, lat, parts in labels.get((n, p), []):
            key = (cost, lat, p)
            if _better(key, best[0] if best else None):
                best = (key, parts)
    return _plan_of(graph, slo_ms, list(best[1]), explored) if best else None


def _insert(front: list, label: tuple) -> None:
    """Add (cost, latency, parts) to a Pareto front unless dominated; drop what it dominates."""
    cost, lat = label[0], label[1]
    for c, la, _ in front:
        if c <= cost + 1e-15 and la <= lat + 1e-9:
            return
    front[:] = [x for x in front if not (cost <= x[0] + 1e-15 and lat <= x[1] + 1e-9)]
    front.append(label)


def brute_force_plan(graph: LayerGraph, slo_ms: float, limits: PartitionLimits = PartitionLimits(),
                     cm: CostModel = CostModel()) -> PartitionPlan | None:
    """Every split into k <= K partitions and every memory per partition (for checking)."""
    n = graph.num_blocks
    mems = memory_choices(graph, limits, cm.fp)
    best, explored = None, 0
    for k in range(1, min(limits.max_partitions, n) + 1):
        for cuts in itertools.combinations(range(1, n), k - 1):
            bounds = (0,) + cuts + (n,)
            for memories in itertools.product(mems, repeat=k):
                explored += 1
                parts = [estimate_partition(graph, bounds[q], bounds[q + 1], memories[q], limits, cm)
                         for q in range(k)]
                if any(p is None for p in parts):
                    continue
                lat, cost = sum(p.latency_ms for p in parts), sum(p.cost_usd for p in parts)
                if lat <= slo_ms + 1e-9 and _better((cost, lat, k), best[0] if best else None):
                    best = ((cost, lat, k), parts)
    return _plan_of(graph, slo_ms, best[1], explored) if best else None


def best_single_function(graph: LayerGraph, slo_ms: float, limits: PartitionLimits = PartitionLimits(),
                         cm: CostModel = CostModel()) -> PartitionPlan | None:
    """The unpartitioned baseline: the whole model on one function, cheapest memory in the SLO."""
    return plan_partitions(graph, slo_ms, replace(limits, max_partitions=1), cm)


def chain_cold_ms(plan: PartitionPlan, fp: FunctionPlatformConfig, model_cold_start_ms: float) -> list[float]:
    """What a cold start adds to each hop of a warm-planned chain: the platform's container init
    plus loading the partition's share of the weights (its share of the whole model's load)."""
    total_mb = sum(p.weights_mb for p in plan.partitions) or 1.0
    return [fp.container_init_ms + model_cold_start_ms * p.weights_mb / total_mb for p in plan.partitions]


def chain_cold_charge_usd(plan: PartitionPlan, fp: FunctionPlatformConfig, model_cold_start_ms: float) -> float:
    """What a request whose every hop starts cold pays beyond the warm plan's cost: each hop's
    init time at its own memory, when the platform bills INIT."""
    if not fp.bill_init:
        return 0.0
    return sum(ms / 1000.0 * p.memory_mb / 1024.0 * fp.price_usd_per_gb_s
               for ms, p in zip(chain_cold_ms(plan, fp, model_cold_start_ms), plan.partitions))
