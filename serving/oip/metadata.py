"""Bodies of the Open Inference Protocol's metadata and health endpoints (REST JSON form).

GET /v2 -> server_metadata; GET /v2/models/{name}[/versions/{v}] -> model_metadata;
GET /v2/health/live, /v2/health/ready, /v2/models/{name}/ready -> 200 with `health(...)`.
"""
from __future__ import annotations

from typing import Sequence

from serving.oip.response import CLASSIFICATION_OUTPUTS, OUTPUT_CLASS_IDS, OUTPUT_LABELS, OUTPUT_PROBABILITIES

# What a v2 client may rely on: binary tensors, Triton's classification output parameter, and
# request/response parameters (slo_ms, min_accuracy, top_k in; variant, backend, latency out).
EXTENSIONS = ("binary_tensor_data", "classification", "parameters")


def server_metadata(name: str = "hybridserve", version: str = "0.1.0",
                    extensions: Sequence[str] = EXTENSIONS) -> dict:
    return {"name": name, "version": version, "extensions": list(extensions)}


def model_metadata(name: str, input_shape: Sequence[int], num_classes: int, *,
                   versions: Sequence[str] = ("1",), platform: str = "mxnet",
                   parameters: dict | None = None) -> dict:
    """Metadata of a servable name (an app or a model variant).

    Two alternative inputs are declared (a request sends one): "image" (BYTES, encoded
    JPEG/PNG) and "input" (FP32 pixels, N×C×H×W). -1 marks the variable batch dimension and k.
    """
    doc = {
        "name": name,
        "versions": list(versions),
        "platform": platform,
        "inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [-1]},
            {"name": "input", "datatype": "FP32", "shape": [-1, *map(int, input_shape)]},
        ],
        "outputs": [
            {"name": n,
             "datatype": {OUTPUT_CLASS_IDS: "INT64", OUTPUT_LABELS: "BYTES"}.get(n, "FP32"),
             "shape": [-1, int(num_classes)] if n == OUTPUT_PROBABILITIES else [-1, -1]}
            for n in CLASSIFICATION_OUTPUTS
        ],
    }
    if parameters:
        doc["parameters"] = dict(parameters)
    return doc


def health(live: bool = True, ready: bool | None = None) -> dict:
    """Body of the health endpoints (the status code carries the answer; KServe adds the body)."""
    return {"live": live} if ready is None else {"ready": ready}
