"""Open Inference Protocol (KServe v2) codec: pure functions, no Ray, no sockets.

The router, the local function worker and the Lambda handler all speak it through here:

    req = parse_infer_request(body, headers.get(HEADER_LENGTH), output_names=CLASSIFICATION_OUTPUTS)
    batch = batch_from_request(req, model.input_shape)
    resp = classification_response(req, name, model.predict(batch), model.labels, parameters={...})
    body, headers = encode_infer_response(resp)

Every client mistake raises `InvalidInput(field, message)`; answer 400 with `err.to_json()`.
"""
from serving.oip.datatypes import DATATYPES, NUMPY_DTYPES, datatype_of
from serving.oip.errors import InvalidInput
from serving.oip.metadata import EXTENSIONS, health, model_metadata, server_metadata
from serving.oip.request import (HEADER_LENGTH, InferInput, InferRequest, RequestedOutput, encode_infer_request,
                                 parse_infer_request)
from serving.oip.response import (CLASSIFICATION_OUTPUTS, DEFAULT_OUTPUTS, DEFAULT_TOP_K, OUTPUT_CLASS_IDS,
                                  OUTPUT_LABELS, OUTPUT_PROBABILITIES, OUTPUT_SCORES, InferOutput, InferResponse,
                                  classification_response, encode_infer_response, parse_infer_response)
from serving.oip.tensors import batch_from_request

__all__ = [
    "DATATYPES", "NUMPY_DTYPES", "datatype_of", "InvalidInput", "EXTENSIONS", "health", "model_metadata",
    "server_metadata", "HEADER_LENGTH", "InferInput", "InferRequest", "RequestedOutput", "encode_infer_request",
    "parse_infer_request", "CLASSIFICATION_OUTPUTS", "DEFAULT_OUTPUTS", "DEFAULT_TOP_K", "OUTPUT_CLASS_IDS",
    "OUTPUT_LABELS", "OUTPUT_PROBABILITIES", "OUTPUT_SCORES", "InferOutput", "InferResponse",
    "classification_response", "encode_infer_response", "parse_infer_response", "batch_from_request",
]
