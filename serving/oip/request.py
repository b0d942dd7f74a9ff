"""Inference requests of the Open Inference Protocol (KServe v2 REST), JSON or binary form.

Server side: `parse_infer_request(body, header_length)` turns the HTTP body into a typed
`InferRequest`, validating as it goes; every problem raises `InvalidInput` naming the field.
Client side (load generator, tests): `encode_infer_request` builds the body and headers the way
`tritonclient.http` does.

Binary tensor extension: with an `Inference-Header-Content-Length: n` header, the first n bytes
of the body are the JSON header and the rest is raw tensor data, one chunk per input that
carries `parameters.binary_data_size`, in input order.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from serving.oip.datatypes import DATATYPES, NUMPY_DTYPES, bytes_elements, datatype_of, to_raw
from serving.oip.errors import InvalidInput

HEADER_LENGTH = "Inference-Header-Content-Length"
# Numpy kinds a JSON number list may parse to, per target datatype: ints are fine for floats,
# floats are not fine for ints (they would be silently truncated).
_JSON_KINDS = {"BOOL": "b", "FP16": "iuf", "FP32": "iuf", "FP64": "iuf"}


@dataclass
class InferInput:
    name: str
    shape: tuple[int, ...]
    datatype: str
    data: np.ndarray              # shaped as `shape`; BYTES -> object array of bytes
    parameters: dict[str, Any] = field(default_factory=dict)
    binary: bool = False          # came as raw bytes (binary extension) rather than JSON


@dataclass
class RequestedOutput:
    name: str
    binary: bool | None = None    # parameters.binary_data; None = not said (request default applies)
    class_count: int = 0          # parameters.classification (Triton classification extension)
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class InferRequest:
    inputs: list[InferInput]
    id: str | None = None
    outputs: list[RequestedOutput] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    slo_ms: float | None = None           # parameters.slo_ms: overrides the app's SLO
    min_accuracy: float | None = None     # parameters.min_accuracy: overrides the app's floor
    top_k: int | None = None              # parameters.top_k: classes per sample in the response
    binary_data_output: bool = False      # parameters.binary_data_output: outputs binary by default


def _number(params: dict, key: str, lo: float, hi: float, integer: bool = False):
    if key not in params:
        return None
    value = params[key]
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not math.isfinite(value) or not lo <= value <= hi:
        kind = "an integer" if integer else "a number"
        raise InvalidInput(f"parameters.{key}", f"must be {kind} in [{lo:g}, {hi:g}], got {value!r}")
    return int(value) if integer else float(value)


def _object(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(where, f"must be an object, got {type(value).__name__}")
    return value


def _flatten(data) -> list:
    """Row-major flatten of possibly nested JSON lists (v2 allows both flat and nested data)."""
    out, stack = [], [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _json_tensor(data, shape: tuple[int, ...], datatype: str, where: str) -> np.ndarray:
    if not isinstance(data, list):
        raise InvalidInput(f"{where}.data", f"must be a list, got {type(data).__name__}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ragged nesting warns in numpy 1.23; it is flattened below
        arr = np.asarray(data) if datatype != "BYTES" else None
    if arr is not None and arr.dtype != object:
        flat = arr.reshape(-1)
    else:
        flat = _flatten(data)
    expected = math.prod(shape)
    if len(flat) != expected:
        raise InvalidInput(f"{where}.data", f"has {len(flat)} elements, shape {list(shape)} needs {expected}")
    if datatype == "BYTES":
        bad = next((i for i, x in enumerate(flat) if not isinstance(x, str)), None)
        if bad is not None:
            raise InvalidInput(f"{where}.data", f"BYTES elements must be strings; element {bad} is "
                                                f"{type(flat[bad]).__name__}")
        out = np.empty(expected, dtype=object)
        out[:] = [x.encode() for x in flat]
        return out.reshape(shape)
    if not isinstance(flat, np.ndarray):
        flat = np.asarray(flat) if flat else np.zeros(0, dtype=NUMPY_DTYPES[datatype])
    kinds = _JSON_KINDS.get(datatype, "iu")
    if flat.size and flat.dtype.kind not in kinds:
        raise InvalidInput(f"{where}.data", f"elements do not fit datatype {datatype}")
    target = NUMPY_DTYPES[datatype]
    if target.kind in "iu" and flat.size:
        info = np.iinfo(target)
        if flat.min() < info.min or flat.max() > info.max:
            raise InvalidInput(f"{where}.data", f"values out of range for {datatype}")
    return flat.astype(target).reshape(shape)


def _raw_tensor(raw: bytes, shape: tuple[int, ...], datatype: str, where: str) -> np.ndarray:
    count = math.prod(shape)
    if datatype == "BYTES":
        items = bytes_elements(raw, count)
        if isinstance(items, str):
            raise InvalidInput(f"{where}.parameters.binary_data_size", items)
        out = np.empty(count, dtype=object)
        out[:] = items
        return out.reshape(shape)
    dtype = NUMPY_DTYPES[datatype]
    if len(raw) != count * dtype.itemsize:
        raise InvalidInput(f"{where}.parameters.binary_data_size",
                           f"{len(raw)} bytes, shape {list(shape)} of {datatype} needs {count * dtype.itemsize}")
    arr = np.frombuffer(raw, dtype=dtype).reshape(shape)
    if datatype == "BOOL" and arr.size and arr.view(np.uint8).max() > 1:
        raise InvalidInput(f"{where}.data", "BOOL bytes must be 0 or 1")
    return arr


def _header_split(body: bytes, header_length) -> tuple[bytes, bytes | None]:
    if header_length is None:
        return body, None
    try:
        n = int(header_length)
    except (TypeError, ValueError):
        raise InvalidInput(HEADER_LENGTH, f"must be an integer, got {header_length!r}") from None
    if not 0 < n <= len(body):
        raise InvalidInput(HEADER_LENGTH, f"{n} is outside the body of {len(body)} bytes")
    return body[:n], body[n:]


def parse_infer_request(body: bytes, header_length: int | str | None = None,
                        output_names: Iterable[str] | None = None) -> InferRequest:
    """Parse and validate an infer request body.

    header_length: the `Inference-Header-Content-Length` header value, if the request had one.
    output_names: the outputs the model can produce; a requested output outside it is an error
      (None: accept any name).
    """
    header, raw = _header_split(body, header_length)
    try:
        doc = json.loads(header)
    except (UnicodeDecodeError, ValueError) as e:
        raise InvalidInput("body", f"not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise InvalidInput("body", f"must be a JSON object, got {type(doc).__name__}")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("id", f"must be a string, got {type(request_id).__name__}")
    params = _object(doc.get("parameters"), "parameters")
    inputs_doc = doc.get("inputs")
    if not isinstance(inputs_doc, list) or not inputs_doc:
        raise InvalidInput("inputs", "must be a non-empty list of tensors")

    offset, inputs = 0, []
    for i, item in enumerate(inputs_doc):
        where = f"inputs[{i}]"
        if not isinstance(item, dict):
            raise InvalidInput(where, "must be an object")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidInput(f"{where}.name", "must be a non-empty string")
        shape = item.get("shape")
        if (not isinstance(shape, list) or
                not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise InvalidInput(f"{where}.shape", f"must be a list of non-negative integers, got {shape!r}")
        shape = tuple(shape)
        datatype = item.get("datatype")
        if datatype not in DATATYPES:
            raise InvalidInput(f"{where}.datatype", f"{datatype!r} is not one of {', '.join(DATATYPES)}")
        in_params = _object(item.get("parameters"), f"{where}.parameters")
        size = in_params.get("binary_data_size")
        if size is not None:
            if "data" in item:
                raise InvalidInput(f"{where}.data", "give either data or parameters.binary_data_size, not both")
            if raw is None:
                raise InvalidInput(f"{where}.parameters.binary_data_size",
                                   f"binary data needs the {HEADER_LENGTH} header")
            if isinstance(size, bool) or not isinstance(size, int) or size < 0 or offset + size > len(raw):
                raise InvalidInput(f"{where}.parameters.binary_data_size",
                                   f"{size!r} does not fit the {len(raw) - offset} binary bytes left")
            data = _raw_tensor(raw[offset:offset + size], shape, datatype, where)
            offset += size
        elif "data" in item:
            data = _json_tensor(item["data"], shape, datatype, where)
        else:
            raise InvalidInput(f"{where}.data", "missing (no data and no parameters.binary_data_size)")
        inputs.append(InferInput(name, shape, datatype, data, in_params, binary=size is not None))
    if raw is not None and offset != len(raw):
        raise InvalidInput("body", f"{len(raw) - offset} binary bytes after the last tensor")

    known = set(output_names) if output_names is not None else None
    outputs_doc = doc.get("outputs", [])
    if not isinstance(outputs_doc, list):
        raise InvalidInput("outputs", "must be a list")
    outputs = []
    for j, item in enumerate(outputs_doc):
        where = f"outputs[{j}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput(f"{where}.name", "each requested output needs a string name")
        if known is not None and item["name"] not in known:
            raise InvalidInput(f"{where}.name", f"unknown output {item['name']!r}; known: {', '.join(sorted(known))}")
        o_params = _object(item.get("parameters"), f"{where}.parameters")
        binary = o_params.get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise InvalidInput(f"{where}.parameters.binary_data", f"must be true or false, got {binary!r}")
        count = o_params.get("classification", 0)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InvalidInput(f"{where}.parameters.classification", f"must be a non-negative integer, got {count!r}")
        outputs.append(RequestedOutput(item["name"], binary, count, o_params))

    binary_default = params.get("binary_data_output", False)
    if not isinstance(binary_default, bool):
        raise InvalidInput("parameters.binary_data_output", f"must be true or false, got {binary_default!r}")
    return InferRequest(inputs=inputs, id=request_id, outputs=outputs, parameters=params,
                        slo_ms=_number(params, "slo_ms", 1e-3, 86_400_000),
                        min_accuracy=_number(params, "min_accuracy", 0.0, 1.0),
                        top_k=_number(params, "top_k", 1, 1000, integer=True),
                        binary_data_output=binary_default)


def encode_infer_request(inputs: dict[str, np.ndarray] | list[tuple[str, np.ndarray]], *, request_id: str | None = None,
                         parameters: dict | None = None, outputs: list[dict] | None = None,
                         binary: bool = True, datatypes: dict[str, str] | None = None) -> tuple[bytes, dict[str, str]]:
    """Build an infer request body and headers (client side).

    inputs: name -> array (object arrays of bytes become BYTES). binary=True sends tensors with
    the binary extension as tritonclient.http does; binary=False sends JSON, with BYTES elements
    base64-encoded (how a JSON client ships an image).
    outputs: requested outputs as v2 objects, e.g. [{"name": "scores", "parameters": {"binary_data": True}}].
    """
    import base64

    items = list(inputs.items()) if isinstance(inputs, dict) else list(inputs)
    doc: dict[str, Any] = {}
    if request_id is not None:
        doc["id"] = request_id
    if parameters:
        doc["parameters"] = dict(parameters)
    tensors, chunks = [], []
    for name, array in items:
        array = np.asarray(array) if not isinstance(array, np.ndarray) else array
        dt = (datatypes or {}).get(name) or datatype_of(array)
        entry: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": dt}
        if binary:
            chunk = to_raw(array, dt)
            entry["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        elif dt == "BYTES":
            entry["data"] = [base64.b64encode(x if isinstance(x, bytes) else str(x).encode()).decode()
                             for x in array.reshape(-1)]
        else:
            entry["data"] = array.reshape(-1).tolist()
        tensors.append(entry)
    doc["inputs"] = tensors
    if outputs is not None:
        doc["outputs"] = outputs
    header = json.dumps(doc, separators=(",", ":")).encode()
    if not binary:
        return header, {"Content-Type": "application/json"}
    return header + b"".join(chunks), {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
