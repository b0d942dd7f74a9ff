"""KServe v2 (Triton) gRPC on Ray Serve: the protos, and conversion to and from serving.oip.

Ray Serve's gRPC proxy (`gRPCOptions(grpc_servicer_functions=["serving.grpc_v2.add_servicer_to_server"])`)
routes each RPC of `inference.GRPCInferenceService` to the ingress method of the same name
(`ModelInfer`, `ServerLive`, ...; see serving.deployments.Router). It pickles the request
protos between processes, so their module must import under its own `__module__` name:
tritonclient's generated classes call themselves `grpc_service_pb2` / `model_config_pb2`, which
are not top-level modules, so importing this file registers those names in `sys.modules`
(the proxy imports this file for the servicer function, replicas import it through
serving.deployments).

A ModelInferRequest becomes the same `oip.InferRequest` the REST path parses: its header is
re-expressed as the v2 JSON header with `binary_data_size` per input and the tensors as raw bytes,
so validation and error messages are exactly those of REST.
"""
from __future__ import annotations

import json
import sys

import grpc
import numpy as np
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

from serving import oip
from serving.oip.datatypes import NUMPY_DTYPES, to_raw

sys.modules.setdefault("grpc_service_pb2", service_pb2)
sys.modules.setdefault("model_config_pb2", model_config_pb2)

pb = service_pb2
add_servicer_to_server = service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server
SERVICER_FUNCTION = "serving.grpc_v2.add_servicer_to_server"

# HTTP status of our errors -> gRPC status code (as KServe maps them).
STATUS = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND,
          413: grpc.StatusCode.RESOURCE_EXHAUSTED, 422: grpc.StatusCode.FAILED_PRECONDITION,
          503: grpc.StatusCode.UNAVAILABLE}

_CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
             "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
             "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
             "FP64": "fp64_contents"}


def param_value(p):
    """An InferParameter's value (bool, int, float or str), None when unset."""
    kind = p.WhichOneof("parameter_choice")
    return None if kind is None else getattr(p, kind)


def set_param(target, key: str, value) -> None:
    """Set `target[key]` (a parameters map) to `value` in the matching oneof field; None sets nothing."""
    if value is None:
        return
    if isinstance(value, bool):
        target[key].bool_param = value
    elif isinstance(value, int):
        target[key].int64_param = value
    elif isinstance(value, float):
        target[key].double_param = value
    else:
        target[key].string_param = str(value)


def _bytes_raw(items) -> bytes:
    return b"".join(len(b).to_bytes(4, "little") + b for b in items)


def to_infer_request(request) -> oip.InferRequest:
    """ModelInferRequest -> oip.InferRequest (raises oip.InvalidInput naming the field)."""
    header = {"inputs": [], "outputs": []}
    if request.id:
        header["id"] = request.id
    params = {k: param_value(v) for k, v in request.parameters.items()}
    if params:
        header["parameters"] = params
    raws = list(request.raw_input_contents)
    if raws and len(raws) != len(request.inputs):
        raise oip.InvalidInput("raw_input_contents", f"{len(raws)} raw tensors for {len(request.inputs)} inputs")
    blobs = []
    for i, t in enumerate(request.inputs):
        if raws:
            raw = raws[i]
        elif t.datatype == "BYTES":
            raw = _bytes_raw(t.contents.bytes_contents)
        elif t.datatype in _CONTENTS:
            raw = np.asarray(getattr(t.contents, _CONTENTS[t.datatype]), dtype=NUMPY_DTYPES[t.datatype]).tobytes()
        else:
            raise oip.InvalidInput(f"inputs[{i}].datatype", f"{t.datatype!r} is not a v2 datatype")
        item = {"name": t.name, "shape": list(t.shape), "datatype": t.datatype,
                "parameters": {k: param_value(v) for k, v in t.parameters.items()}}
        item["parameters"]["binary_data_size"] = len(raw)
        header["inputs"].append(item)
        blobs.append(raw)
    for o in request.outputs:
        out = {"name": o.name, "parameters": {k: param_value(v) for k, v in o.parameters.items()}}
        out["parameters"]["binary_data"] = True
        header["outputs"].append(out)
    head = json.dumps(header).encode()
    return oip.parse_infer_request(head + b"".join(blobs), len(head), output_names=oip.CLASSIFICATION_OUTPUTS)


def from_infer_response(resp: oip.InferResponse):
    """oip.InferResponse -> ModelInferResponse (tensors as raw_output_contents, as Triton does)."""
    out = pb.ModelInferResponse(model_name=resp.model_name, model_version=resp.model_version or "",
                                id=resp.id or "")
    for k, v in (resp.parameters or {}).items():
        set_param(out.parameters, k, v)
    for o in resp.outputs:
        out.outputs.add(name=o.name, datatype=o.datatype, shape=list(o.shape))
        if o.datatype == "BYTES":
            out.raw_output_contents.append(_bytes_raw(
                b if isinstance(b, bytes) else str(b).encode() for b in np.asarray(o.data, dtype=object).reshape(-1)))
        else:
            out.raw_output_contents.append(to_raw(np.asarray(o.data), o.datatype))
    return out


def model_metadata(doc: dict):
    """oip.model_metadata's dict -> ModelMetadataResponse."""
    r = pb.ModelMetadataResponse(name=doc["name"], versions=list(doc.get("versions", [])),
                                 platform=doc.get("platform", ""))
    for key, target in (("inputs", r.inputs), ("outputs", r.outputs)):
        for t in doc.get(key, []):
            target.add(name=t["name"], datatype=t["datatype"], shape=list(t["shape"]))
    return r


def server_metadata(doc: dict):
    return pb.ServerMetadataResponse(name=doc["name"], version=doc["version"], extensions=list(doc["extensions"]))


def fail(grpc_context, status: int, message: str) -> None:
    """Set the gRPC status matching an HTTP error status on Serve's context."""
    grpc_context.set_code(STATUS.get(status, grpc.StatusCode.INTERNAL))
    grpc_context.set_details(message)
