"""The function side of a partitioned variant: run one block range on the tensor it is sent.

One function per partition, named `<variant>-part-<start>-<end>`. The request and response are
JSON-able dicts (what a Lambda invoke carries):

    request  {"request_id", "hop", "attempt", "store_prefix", "tensor": T, "payload_limit_bytes"?}
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
import os
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
    """Serves block ranges of variants, each partition built once per process.

    With `partition_weights_dir` holding the range's file (serving/partition/weights.py), a
    partition loads only its own blocks' weights: what a partition function does. Otherwise the
    whole network is built once (from the same seed or `.params` file) and every partition
    shares its blocks: the in-process form the fake provider and the tests use."""

    def __init__(self, weights_paths: dict[str, str] | None = None, partition_weights_dir: str | None = None):
        self._weights = weights_paths or {}
        self._partition_dir = partition_weights_dir
        self._nets: dict[str, tuple] = {}
        self._parts: dict[tuple[str, int, int], object] = {}
        self.loaded_param_bytes: dict[tuple[str, int, int], int] = {}  # of partitions built from their own file
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

    def _build(self, variant: str, start: int, end: int):
        from serving.partition.graph import build_partition
        from serving.partition.weights import load_partition, loaded_param_bytes, partition_weights_path

        if self._partition_dir is not None:
            path = partition_weights_path(self._partition_dir, variant, start, end)
            if os.path.isfile(path):
                part = load_partition(variant, start, end, path)
                self.loaded_param_bytes[(variant, start, end)] = loaded_param_bytes(part)
                return part
        return build_partition(self.blocks(variant), start, end)

    def prepare(self, variant: str, start: int, end: int) -> bool:
        """Build the partition now (a function's cold start); whether it was not built yet."""
        with self._lock:
            key = (variant, start, end)
            if key in self._parts:
                return False
            self._parts[key] = self._build(variant, start, end)
            return True

    def run(self, variant: str, start: int, end: int, x: np.ndarray) -> np.ndarray:
        import mxnet as mx

        with self._lock:
            key = (variant, start, end)
            if key not in self._parts:
                self._parts[key] = self._build(variant, start, end)
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
        # The driver may run under a tighter payload limit than the platform's: it says so.
        limit = min(self.payload_limit_bytes, int(payload.get("payload_limit_bytes", self.payload_limit_bytes)))
        if payload_bytes({**out, "compute_ms": 0.0, "io_ms": 0.0}) > limit:
            key = f"{payload['store_prefix']}{payload['request_id']}/hop{payload['hop']}-a{payload['attempt']}.npy"
            self.store.put(key, tensor_to_bytes(y))
            out = {"tensor": {"key": key}}
        if self.fail_after_output > 0:
            self.fail_after_output -= 1
            raise RuntimeError("injected failure after the output was stored")
        t3 = time.perf_counter()
        return {**out, "compute_ms": (t2 - t1) * 1000.0, "io_ms": ((t1 - t0) + (t3 - t2)) * 1000.0}
