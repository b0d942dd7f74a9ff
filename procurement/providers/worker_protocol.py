"""The pipe protocol between a local function provider and its worker processes
(serving/function_worker.py): one message at a time, each a 4-byte big-endian length followed by
a pickle. Both ends import it from here, so the provider does not import the data plane."""
from __future__ import annotations

import pickle
import struct
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
