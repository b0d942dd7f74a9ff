"""A local "function" instance: one worker process serving one model variant, one request at a time.

Started by `procurement.providers.local.LocalFunctionProvider` as
`python -m serving.function_worker <variant> <runtime>`; it stands in for one Lambda execution
environment. The model is loaded on the first request (a real cold start: interpreter, mxnet
import, weights), then kept warm until the parent reaps the process after its keep-alive.

Protocol on stdin/stdout, one message at a time, each a 4-byte big-endian length followed by a
pickle: request = a float32 N×C×H×W batch; reply = ("ok", probabilities, compute_ms, load_ms)
or ("error", message). EOF on stdin (the parent went away) ends the process.
"""
from __future__ import annotations

import pickle
import struct
import sys
import time
from typing import BinaryIO

_LEN = struct.Struct(">I")


def write_message(stream: BinaryIO, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LEN.pack(len(data)) + data)
    stream.flush()


def read_message(stream: BinaryIO):
    """The next message, or None at EOF."""
    head = stream.read(_LEN.size)
    if len(head) < _LEN.size:
        return None
    (n,) = _LEN.unpack(head)
    data = stream.read(n)
    if len(data) < n:
        return None
    return pickle.loads(data)


def serve(variant: str, runtime: str, stdin: BinaryIO, stdout: BinaryIO) -> int:
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


def main() -> int:
    variant, runtime = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "mxnet")
    # Keep the protocol stream clean: anything the libraries print goes to stderr.
    out = sys.stdout.buffer
    sys.stdout = sys.stderr
    return serve(variant, runtime, sys.stdin.buffer, out)


if __name__ == "__main__":
    sys.exit(main())
