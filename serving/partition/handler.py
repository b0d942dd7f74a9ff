"""The function side of a partitioned variant: run one block range on the tensor it is sent.

One function per partition, named `<variant>-part-<start>-<end>`. The request and response are
JSON-able dicts (what a Lambda invoke carries):

    request  {"request_id", "hop", "attempt", "store_prefix", "tensor": T}
    response {"tensor": T, "compute_ms", "io_ms"}   or   {"error": "..."}
    T = {"inline": <base64 .npy>}  or  {"key": <object key>}

The output goes inline when the encoded response fits the payload limit, else to the object
store under `<store_prefix><request_id>/hop<hop>-a<attempt>.npy`. Errors are returned as
`{"error": ...}` (Lambda's FunctionError shape) so the driver can retry or fail the request.

`PartitionHandler(store)` is a handler for `FakeFunctionProvider` (`handler(name, payload) ->
(response, duration_ms)`); `handle(name, payload)` is the same without the duration, for a
worker process or a Lambda entry point.
"""
from __future__ import annotations

import base64
import io
import json
import threading
import time

import numpy as np

from procurement.partition_planner import LAMBDA_PAYLOAD_LIMIT_BYTES
from serving.partition.store import ObjectStore

_SEP = "-part-"


def function_name(variant: str, start: int, end: int) -> str:
    return f"{variant}{_SEP}{start}-{end}"


def parse_function_name(name: str) -> tuple[str, int, int]:
    variant, sep, rng = name.rpartition(_SEP)
    start, _, end = rng.partition("-")
    if not sep or not start.isdigit() or not end.isdigit():
        raise ValueError(f"not a partition function name: {name!r}")
    return variant, int(start), int(end)


def tensor_to_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def tensor_from_bytes(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def inline_tensor(arr: np.ndarray) -> dict:
    return {"inline": base64.b64encode(tensor_to_bytes(arr)).decode("ascii")}


def payload_bytes(payload: dict) -> int:
    """Size of a payload as the invoke API would carry it (compact JSON)."""
    return len(json.dumps(payload, separators=(",", ":")))


def read_tensor(t: dict, store: ObjectStore) -> np.ndarray:
    if "inline" in t:
        return tensor_from_bytes(base64.b64decode(t["inline"]))
    return tensor_from_bytes(store.get(t["key"]))


class PartitionRunner:
    """Builds each variant once per process and serves any block range of it.

    Every partition of a variant shares the one network's blocks, so weights are built once; a
    deployment with separate functions (Lambda) builds the same weights in each, from the same
    seed or `.params` file, which is what makes the chain compute the whole model's output."""

    def __init__(self, weights_paths: dict[str, str] | None = None):
        self._weights = weights_paths or {}
        self._nets: dict[str, tuple] = {}
        self._parts: dict[tuple[str, int, int], object] = {}
        self._lock = threading.Lock()  # cached graphs are not safe to run from two threads

    def blocks(self, variant: str):
        if variant not in self._nets:
            from serving.partition.graph import block_sequence
            from serving.runtimes import spec_of
            from serving.runtimes.mxnet_runtime import build_net

            net, _ = build_net(spec_of(variant), self._weights.get(variant))
            self._nets[variant] = (net, block_sequence(net))
        return self._nets[variant][1]

    def whole(self, variant: str):
        self.blocks(variant)
        return self._nets[variant][0]

    def run(self, variant: str, start: int, end: int, x: np.ndarray) -> np.ndarray:
        import mxnet as mx

        from serving.partition.graph import build_partition

        with self._lock:
            key = (variant, start, end)
            if key not in self._parts:
                self._parts[key] = build_partition(self.blocks(variant), start, end)
            return self._parts[key](mx.nd.array(x, dtype="float32")).asnumpy()


class PartitionHandler:
    """Executes partition functions; fault hooks let tests fail a hop after it wrote its output."""

    def __init__(self, store: ObjectStore, runner: PartitionRunner | None = None,
                 payload_limit_bytes: int = LAMBDA_PAYLOAD_LIMIT_BYTES):
        self.store = store
        self.runner = runner or PartitionRunner()
        self.payload_limit_bytes = payload_limit_bytes
        self.fail_after_output = 0  # fault hook: the next N calls fail after storing their output

    def __call__(self, name: str, payload: dict) -> tuple[dict, float]:
        t0 = time.perf_counter()
        response = self.handle(name, payload)
        return response, (time.perf_counter() - t0) * 1000.0

    def handle(self, name: str, payload: dict) -> dict:
        try:
            return self._handle(name, payload)
        except Exception as e:  # a function reports its error; it never takes the driver down
            return {"error": f"{type(e).__name__}: {e}"}

    def _handle(self, name: str, payload: dict) -> dict:
        variant, start, end = parse_function_name(name)
        t0 = time.perf_counter()
        x = read_tensor(payload["tensor"], self.store)
        t1 = time.perf_counter()
        y = self.runner.run(variant, start, end, x)
        t2 = time.perf_counter()
        out = {"tensor": inline_tensor(y)}
        if payload_bytes({**out, "compute_ms": 0.0, "io_ms": 0.0}) > self.payload_limit_bytes:
            key = f"{payload['store_prefix']}{payload['request_id']}/hop{payload['hop']}-a{payload['attempt']}.npy"
            self.store.put(key, tensor_to_bytes(y))
            out = {"tensor": {"key": key}}
        if self.fail_after_output > 0:
            self.fail_after_output -= 1
            raise RuntimeError("injected failure after the output was stored")
        t3 = time.perf_counter()
        return {**out, "compute_ms": (t2 - t1) * 1000.0, "io_ms": ((t1 - t0) + (t3 - t2)) * 1000.0}
