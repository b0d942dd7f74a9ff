"""A local "function" instance: one worker process serving one model variant, one request at a time.

Started by `procurement.providers.local.LocalFunctionProvider` as
`python -m serving.function_worker <variant> <runtime>`; it stands in for one Lambda execution
environment. The model is loaded on the first request (a real cold start: interpreter, mxnet
import, weights), then kept warm until the parent reaps the process after its keep-alive.

Protocol on stdin/stdout, one message at a time, each a 4-byte big-endian length followed by a
pickle: request = a float32 N×C×H×W batch; reply = ("ok", probabilities, compute_ms, load_ms)
or ("error", message). EOF on stdin (the parent went away) ends the process.

A partition function (`<variant>-part-<start>-<end>`, issue 13) serves blocks [start, end) of a
variant instead: request = the `PartitionHandler` request dict, reply = ("ok", response dict
with `load_ms` and `param_bytes` added, compute_ms, load_ms) or ("error", message). It loads
only its own blocks' weights from $HYBRIDSERVE_PARTITION_WEIGHTS (default: the cache's
`partitions/`; written by `serving.partition.weights.export_partition_weights`) and reads and
writes intermediate tensors in the local-directory object store $HYBRIDSERVE_PARTITION_STORE
(default: the cache's `partition-store/`). $HYBRIDSERVE_PARTITION_FAIL_AFTER_OUTPUT=N makes its
first N requests fail after storing their output (a fault hook for the cleanup tests).
"""
from __future__ import annotations

import sys
import time
from typing import BinaryIO

from procurement.providers.worker_protocol import read_message, write_message


def serve(variant: str, runtime: str, stdin: BinaryIO, stdout: BinaryIO) -> int:
    if "-part-" in variant:  # a partition function (checked cheaply: no import for a whole variant)
        return serve_partition(variant, stdin, stdout)
    model = None
    while True:
        batch = read_message(stdin)
        if batch is None:
            return 0
        load_ms = 0.0
        try:
            if model is None:
                from serving.runtimes import load_model

                t0 = time.perf_counter()
                model = load_model(variant, runtime=runtime)
                load_ms = (time.perf_counter() - t0) * 1000.0
            t0 = time.perf_counter()
            probs = model.predict(batch)
            reply = ("ok", probs, (time.perf_counter() - t0) * 1000.0, load_ms)
        except Exception as e:  # a bad request must not kill a warm instance
            reply = ("error", f"{type(e).__name__}: {e}")
        write_message(stdout, reply)


def serve_partition(name: str, stdin: BinaryIO, stdout: BinaryIO) -> int:
    """Serve one partition function (see the module docstring)."""
    import os

    from serving.partition.handler import PartitionHandler, PartitionRunner, parse_function_name
    from serving.partition.store import LocalDirObjectStore
    from serving.partition.weights import default_weights_dir
    from serving.runtimes.cache import cache_dir

    variant, start, end = parse_function_name(name)  # a malformed name fails the worker at start
    runner = PartitionRunner(partition_weights_dir=os.environ.get("HYBRIDSERVE_PARTITION_WEIGHTS")
                             or default_weights_dir())
    store = LocalDirObjectStore(os.environ.get("HYBRIDSERVE_PARTITION_STORE") or cache_dir("partition-store"))
    handler = PartitionHandler(store, runner)
    handler.fail_after_output = int(os.environ.get("HYBRIDSERVE_PARTITION_FAIL_AFTER_OUTPUT", "0"))
    while True:
        request = read_message(stdin)
        if request is None:
            return 0
        load_ms = 0.0
        try:
            t0 = time.perf_counter()
            if runner.prepare(variant, start, end):  # the cold start: build and load its blocks
                load_ms = (time.perf_counter() - t0) * 1000.0
        except Exception as e:
            write_message(stdout, ("error", f"{type(e).__name__}: {e}"))
            continue
        response = handler.handle(name, request)
        if "error" in response:
            write_message(stdout, ("error", response["error"]))
            continue
        response.update(load_ms=load_ms, param_bytes=runner.loaded_param_bytes.get((variant, start, end), -1))
        write_message(stdout, ("ok", response, response["compute_ms"], load_ms))


def main() -> int:
    variant, runtime = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "mxnet")
    # Keep the protocol stream clean: anything the libraries print goes to stderr.
    out = sys.stdout.buffer
    sys.stdout = sys.stderr
    return serve(variant, runtime, sys.stdin.buffer, out)


if __name__ == "__main__":
    sys.exit(main())
