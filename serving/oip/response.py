"""Inference responses of the Open Inference Protocol, JSON or binary form.

Server side: `classification_response` turns a model's class probabilities into the outputs a
client asked for (class ids, labels, top-k scores, full probabilities, or Triton-style
classification strings), and `encode_infer_response` serializes it: outputs requested with
`binary_data` (or all, under `binary_data_output`) go as raw bytes after the JSON header, with
an `Inference-Header-Content-Length` response header. Client side: `parse_infer_response`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from serving.oip.datatypes import NUMPY_DTYPES, bytes_elements, to_raw
from serving.oip.errors import InvalidInput
from serving.oip.request import HEADER_LENGTH, InferRequest, RequestedOutput
from serving.runtimes.model import top_k as _top_k

OUTPUT_CLASS_IDS = "class_ids"          # INT64 [N, k]: best classes, best first
OUTPUT_LABELS = "labels"                # BYTES [N, k]: their labels
OUTPUT_SCORES = "scores"                # FP32  [N, k]: their probabilities
OUTPUT_PROBABILITIES = "probabilities"  # FP32  [N, classes]: only when asked for
CLASSIFICATION_OUTPUTS = (OUTPUT_CLASS_IDS, OUTPUT_LABELS, OUTPUT_SCORES, OUTPUT_PROBABILITIES)
DEFAULT_OUTPUTS = (OUTPUT_CLASS_IDS, OUTPUT_LABELS, OUTPUT_SCORES)
DEFAULT_TOP_K = 5


@dataclass
class InferOutput:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray                   # BYTES -> object array of bytes
    parameters: dict[str, Any] = field(default_factory=dict)
    binary: bool = False               # send as raw bytes after the JSON header


@dataclass
class InferResponse:
    model_name: str
    outputs: list[InferOutput]
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)

    def output(self, name: str) -> InferOutput:
        for o in self.outputs:
            if o.name == name:
                return o
        raise KeyError(name)


def _bytes_array(values, shape) -> np.ndarray:
    out = np.empty(math.prod(shape), dtype=object)
    out[:] = [v if isinstance(v, bytes) else str(v).encode() for v in np.asarray(values, dtype=object).reshape(-1)]
    return out.reshape(shape)


def classification_response(request: InferRequest, model_name: str, probabilities: np.ndarray,
                            labels: Sequence[str], *, model_version: str | None = "1",
                            parameters: dict[str, Any] | None = None) -> InferResponse:
    """The response to `request` given the model's N×classes probabilities.

    Outputs: those the request names (any of CLASSIFICATION_OUTPUTS), else DEFAULT_OUTPUTS.
    k = the request's parameters.top_k, else DEFAULT_TOP_K, at most the number of classes. A
    requested output with parameters.classification = c comes back as Triton's classification
    extension does: BYTES [N, c] of "score:class_id:label".
    parameters: what the server reports (variant, backend, latency_ms, cold_start, ...).
    """
    probabilities = np.asarray(probabilities, dtype=np.float32)
    n, num_classes = probabilities.shape
    k = min(request.top_k or DEFAULT_TOP_K, num_classes)
    # Index the labels as they are (a tuple of 1000 ImageNet labels must not be copied into a
    # numpy array per request just to pick k of them).
    label_of = labels if isinstance(labels, (list, tuple)) else list(labels)
    ids, scores = _top_k(probabilities, k)
    requested_outputs = request.outputs or [RequestedOutput(name) for name in DEFAULT_OUTPUTS]
    outputs = []
    for idx, requested in enumerate(requested_outputs):
        name = requested.name
        binary = requested.binary if requested.binary is not None else request.binary_data_output
        if requested.class_count:
            c = min(requested.class_count, num_classes)
            c_ids, c_scores = _top_k(probabilities, c)
            strings = [f"{s:f}:{i}:{label_of[i]}" for i, s in zip(c_ids.reshape(-1).tolist(), c_scores.reshape(-1))]
            outputs.append(InferOutput(name, "BYTES", (n, c), _bytes_array(strings, (n, c)), binary=binary))
        elif name == OUTPUT_CLASS_IDS:
            outputs.append(InferOutput(name, "INT64", (n, k), ids, binary=binary))
        elif name == OUTPUT_LABELS:
            chosen = [label_of[i] for i in ids.reshape(-1).tolist()]
            outputs.append(InferOutput(name, "BYTES", (n, k), _bytes_array(chosen, (n, k)), binary=binary))
        elif name == OUTPUT_SCORES:
            outputs.append(InferOutput(name, "FP32", (n, k), scores, binary=binary))
        elif name == OUTPUT_PROBABILITIES:
            outputs.append(InferOutput(name, "FP32", (n, num_classes), probabilities, binary=binary))
        else:
            raise InvalidInput(f"outputs[{idx}].name",
                               f"unknown output {name!r}; known: {', '.join(CLASSIFICATION_OUTPUTS)}")
    return InferResponse(model_name=model_name, model_version=model_version, id=request.id,
                         parameters=dict(parameters or {}), outputs=outputs)


def _json_data(out: InferOutput) -> list:
    flat = np.asarray(out.data).reshape(-1)
    if out.datatype == "BYTES":
        # Labels are text; undecodable bytes are replaced so the JSON stays valid.
        return [b.decode("utf-8", errors="replace") if isinstance(b, bytes) else str(b) for b in flat]
    return flat.tolist()


def _jsonable(value):
    """Parameters may hold numpy scalars (latencies, ids); JSON wants plain Python numbers."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def encode_infer_response(response: InferResponse) -> tuple[bytes, dict[str, str]]:
    """Serialize a response: (body, headers). Binary outputs follow the JSON header in order."""
    doc: dict[str, Any] = {"model_name": response.model_name}
    if response.model_version is not None:
        doc["model_version"] = response.model_version
    if response.id is not None:
        doc["id"] = response.id
    if response.parameters:
        doc["parameters"] = response.parameters
    entries, chunks = [], []
    for out in response.outputs:
        entry: dict[str, Any] = {"name": out.name, "datatype": out.datatype, "shape": list(out.shape)}
        params = dict(out.parameters)
        if out.binary:
            chunk = to_raw(out.data, out.datatype)
            params["binary_data_size"] = len(chunk)
            chunks.append(chunk)
        else:
            entry["data"] = _json_data(out)
        if params:
            entry["parameters"] = params
        entries.append(entry)
    doc["outputs"] = entries
    header = json.dumps(doc, separators=(",", ":"), default=_jsonable).encode()
    if not chunks:
        return header, {"Content-Type": "application/json"}
    return header + b"".join(chunks), {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))}


def parse_infer_response(body: bytes, header_length: int | str | None = None) -> InferResponse:
    """Parse a response body (client side); raises ValueError on a malformed one."""
    n = int(header_length) if header_length is not None else len(body)
    doc = json.loads(body[:n])
    if "error" in doc:
        raise ValueError(f"server error: {doc['error']}")
    raw, offset, outputs = body[n:], 0, []
    for entry in doc.get("outputs", []):
        shape = tuple(entry["shape"])
        params = dict(entry.get("parameters") or {})
        size = params.pop("binary_data_size", None)
        dt = entry["datatype"]
        if size is not None:
            chunk = raw[offset:offset + size]
            offset += size
            if dt == "BYTES":
                items = bytes_elements(chunk, math.prod(shape))
                if isinstance(items, str):
                    raise ValueError(f"output {entry['name']}: {items}")
                data = _bytes_array(items, shape)
            else:
                data = np.frombuffer(chunk, dtype=NUMPY_DTYPES[dt]).reshape(shape)
        elif dt == "BYTES":
            data = _bytes_array([s.encode() for s in entry["data"]], shape)
        else:
            data = np.asarray(entry["data"], dtype=NUMPY_DTYPES[dt]).reshape(shape)
        outputs.append(InferOutput(entry["name"], dt, shape, data, params, binary=size is not None))
    return InferResponse(model_name=doc["model_name"], outputs=outputs, model_version=doc.get("model_version"),
                         id=doc.get("id"), parameters=doc.get("parameters") or {})
