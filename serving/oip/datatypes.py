"""Open Inference Protocol tensor datatypes and their raw (binary extension) byte layout.

Binary tensor data is little-endian, row-major, without padding; BOOL is one byte per
element; a BYTES element is a 4-byte little-endian unsigned length followed by its bytes.
"""
from __future__ import annotations

import struct

import numpy as np

# Datatype name -> numpy dtype of its little-endian raw form. BYTES has no fixed width.
NUMPY_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("bool"),
    "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
DATATYPES = tuple(NUMPY_DTYPES) + ("BYTES",)
_U32 = struct.Struct("<I")


def datatype_of(array: np.ndarray) -> str:
    """The v2 datatype name of a numpy array (object/bytes/str arrays are BYTES)."""
    if array.dtype.kind in "OSU":
        return "BYTES"
    for name, dt in NUMPY_DTYPES.items():
        if array.dtype == dt or array.dtype == dt.newbyteorder("="):
            return name
    raise ValueError(f"no v2 datatype for numpy dtype {array.dtype}")


def _as_bytes(item) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode()
    if isinstance(item, (bytearray, memoryview)):
        return bytes(item)
    return str(item).encode()


def to_raw(array: np.ndarray, datatype: str) -> bytes:
    """Serialize a tensor to its binary-extension bytes."""
    if datatype == "BYTES":
        out = bytearray()
        for item in np.asarray(array, dtype=object).reshape(-1):
            b = _as_bytes(item)
            out += _U32.pack(len(b)) + b
        return bytes(out)
    return np.ascontiguousarray(array, dtype=NUMPY_DTYPES[datatype]).tobytes()


def bytes_elements(raw: bytes, count: int) -> list[bytes] | str:
    """Split BYTES raw data into exactly `count` elements; return a message string if it cannot."""
    items, pos, view = [], 0, memoryview(raw)
    for i in range(count):
        if pos + 4 > len(raw):
            return f"BYTES data ends inside the length prefix of element {i}"
        (n,) = _U32.unpack_from(raw, pos)
        pos += 4
        if pos + n > len(raw):
            return f"BYTES element {i} declares {n} bytes, only {len(raw) - pos} remain"
        items.append(bytes(view[pos:pos + n]))
        pos += n
    if pos != len(raw):
        return f"{len(raw) - pos} bytes left over after {count} BYTES elements"
    return items
