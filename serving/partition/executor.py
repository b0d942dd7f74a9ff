"""Serve a partitioned variant as a chain of function invocations, driven by the caller.

Provider-agnostic: it only uses the `FunctionProvider` protocol (deploy, invoke), so the same
chain runs on the in-memory fake with a `PartitionHandler`, on local worker processes and on
Lambda. For each request:

1. hop 0 gets the input inline; each later hop gets the previous hop's output as it came back
   (inline, or the object-store key the previous function wrote);
2. a failed invocation (provider error, timeout, or an `{"error"}` response) is retried up to
   `max_attempts` times in all; after that the request fails with `PartitionChainError` naming
   the hop and the last error;
3. every invocation, failed or not, is billed to the ledger at its billed duration and memory,
   and every store PUT/GET it reported at the store's request price;
4. whatever happens, everything the request wrote under `<store_prefix><request id>/` is
   deleted before `infer` returns or raises: nothing is left in the store.
"""
from __future__ import annotations

import itertools
import time
import uuid
from dataclasses import dataclass

import numpy as np

from controller.config import FunctionPlatformConfig
from controller.ledger import Ledger, function_charge_usd
from procurement.partition_planner import LAMBDA_PAYLOAD_LIMIT_BYTES, PartitionPlan, StorePrices
from procurement.providers.base import FunctionProvider
from serving.partition.handler import function_name, inline_tensor, payload_bytes, read_tensor
from serving.partition.store import ObjectStore


class PartitionChainError(RuntimeError):
    """A request of a partitioned variant failed: a hop kept failing, or a payload was too big."""


@dataclass(frozen=True)
class PartitionedDeployment:
    """A variant served as partitions [start, end) with one function (and memory) each."""

    variant: str
    partitions: tuple[tuple[int, int, int], ...]  # (start, end, memory_mb)

    @classmethod
    def from_plan(cls, plan: PartitionPlan) -> "PartitionedDeployment":
        return cls(plan.model, tuple((p.start, p.end, p.memory_mb) for p in plan.partitions))

    @property
    def function_names(self) -> list[str]:
        return [function_name(self.variant, s, e) for s, e, _ in self.partitions]


@dataclass(frozen=True)
class HopRecord:
    hop: int
    function: str
    memory_mb: int
    attempts: int
    duration_ms: float        # of the successful attempt, as the provider reported it
    compute_ms: float
    cost_usd: float           # every attempt plus store requests
    output_via_store: bool
    cold_start: bool
    io_ms: float = 0.0        # in the function: reading its input and writing its output
    load_ms: float = 0.0      # in the function: building and loading its blocks (cold start)
    param_bytes: int = -1     # weights the function holds (a worker loading its blocks only)


@dataclass(frozen=True)
class ChainResult:
    output: np.ndarray
    latency_ms: float         # wall time of the whole chain, as the caller saw it
    cost_usd: float
    hops: tuple[HopRecord, ...]


class ChainExecutor:
    def __init__(self, provider: FunctionProvider, store: ObjectStore, fp: FunctionPlatformConfig | None = None,
                 ledger: Ledger | None = None, prices: StorePrices = StorePrices(),
                 payload_limit_bytes: int = LAMBDA_PAYLOAD_LIMIT_BYTES, max_attempts: int = 2,
                 timeout_s: float = 60.0, store_prefix: str = "hs-partition/"):
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.provider, self.store = provider, store
        self.fp = fp or FunctionPlatformConfig()
        self.ledger = ledger if ledger is not None else Ledger()
        self.prices = prices
        self.payload_limit_bytes = payload_limit_bytes
        self.max_attempts, self.timeout_s, self.store_prefix = max_attempts, timeout_s, store_prefix
        self._seq = itertools.count()

    def deploy(self, dep: PartitionedDeployment, warm_pool: int = 0) -> None:
        for name, (_, _, memory_mb) in zip(dep.function_names, dep.partitions):
            self.provider.deploy(name, memory_mb, warm_pool)

    def infer(self, dep: PartitionedDeployment, batch: np.ndarray, request_id: str | None = None) -> ChainResult:
        """Run `batch` through every partition in order; the last partition's output."""
        request_id = request_id or f"{uuid.uuid4().hex[:12]}-{next(self._seq)}"
        prefix = f"{self.store_prefix}{request_id}/"
        t0 = time.perf_counter()
        hops: list[HopRecord] = []
        tensor = inline_tensor(batch)
        try:
            for hop, (name, (_, _, memory_mb)) in enumerate(zip(dep.function_names, dep.partitions)):
                consumed = tensor.get("key")
                tensor, record = self._hop(dep.variant, hop, name, memory_mb, tensor, request_id)
                hops.append(record)
                if consumed:  # the next function has it; free the store early
                    self.store.delete_prefix(consumed)
            output = read_tensor(tensor, self.store)
        finally:
            self.store.delete_prefix(prefix)
        return ChainResult(output, (time.perf_counter() - t0) * 1000.0, sum(h.cost_usd for h in hops), tuple(hops))

    def _bill(self, variant: str, billed_ms: float, memory_mb: int, puts: int = 0, gets: int = 0) -> float:
        usd = function_charge_usd(billed_ms, memory_mb, self.fp) + puts * self.prices.put_usd + gets * self.prices.get_usd
        self.ledger.add_function(variant, usd)
        return usd

    def _hop(self, variant: str, hop: int, name: str, memory_mb: int, tensor: dict,
             request_id: str) -> tuple[dict, HopRecord]:
        cost, last_error = 0.0, ""
        gets = 1 if "key" in tensor else 0
        for attempt in range(self.max_attempts):
            payload = {"request_id": request_id, "hop": hop, "attempt": attempt,
                       "store_prefix": self.store_prefix, "payload_limit_bytes": self.payload_limit_bytes,
                       "tensor": tensor}
            if payload_bytes(payload) > self.payload_limit_bytes:
                raise PartitionChainError(f"{name}: request payload {payload_bytes(payload)} B exceeds the "
                                          f"{self.payload_limit_bytes} B limit")
            res = self.provider.invoke(name, payload, self.timeout_s)
            response = res.payload if res.ok and isinstance(res.payload, dict) else {}
            failed = not res.ok or "error" in response or "tensor" not in response
            out_via_store = "key" in response.get("tensor", {})
            # A failed attempt is billed for what it ran; its stored output (if any) is unknown
            # here and is removed with the request's prefix.
            cost += self._bill(variant, res.billed_ms, memory_mb, puts=int(out_via_store), gets=gets)
            if failed:
                last_error = res.error or response.get("error") or "malformed response"
                continue
            return response["tensor"], HopRecord(hop, name, memory_mb, attempt + 1, res.duration_ms,
                                                 float(response.get("compute_ms", 0.0)), cost, out_via_store,
                                                 res.cold_start, float(response.get("io_ms", 0.0)),
                                                 float(response.get("load_ms", 0.0)),
                                                 int(response.get("param_bytes", -1)))
        raise PartitionChainError(f"{variant}: hop {hop} ({name}) failed after {self.max_attempts} attempts: "
                                  f"{last_error}")
