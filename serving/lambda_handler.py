"""The AWS Lambda entry point: `handler(event, context)` serves one request (or batch) of one
model variant; image CMD `serving.lambda_handler.handler` (Dockerfile.lambda).

Events:
- inference: `{"model": "inception", "inputs": <FP32 N×C×H×W>, "batch": N, "top_k": 1}` where
  `inputs` is a nested list, or `{"b64": <little-endian float32 bytes, base64>, "shape": [...]}`;
  `model` defaults to $HYBRIDSERVE_MODEL (each function serves one model), `batch` (optional)
  must match N. Returns `{"model", "class_ids", "scores", "labels"?, "duration_ms", "cold",
  "load_ms", "request_id"}`; with `"return_probabilities": true` also `probabilities`.
  Several samples (one request's batch, or the function batcher's batch of several requests,
  serving/function_batcher.py) run as ONE forward pass; every output list is per sample, in
  input order, so the caller splits the reply back by row.
- warm-up ping: `{"warmup": true}` loads the model if this execution environment has not yet
  (so the ping, not a user request, pays the cold start) and returns `{"warmup": true, "cold"}`.

The model is loaded on first use and kept for the life of the execution environment. The
loader is injectable (`set_loader`) so tests need no mxnet; by default it is
`serving.runtimes.load_model(variant, runtime=$HYBRIDSERVE_RUNTIME, weights_path=...)` with
weights at $HYBRIDSERVE_WEIGHTS_DIR/<variant>.params when that file exists.
A bad request raises ValueError: Lambda reports it as a function error, which the provider
turns into a failed InvokeResult.
"""
from __future__ import annotations

import base64
import os
import time
from typing import Any, Callable

import numpy as np

Loader = Callable[[str], Any]  # variant -> a model with predict(N×C×H×W float32) -> N×classes

_models: dict[str, Any] = {}
_loader: Loader | None = None


def default_loader(variant: str) -> Any:
    from serving.runtimes import load_model  # lazy: mxnet is imported only when a model loads
    weights = os.path.join(os.environ.get("HYBRIDSERVE_WEIGHTS_DIR", "/opt/models"), f"{variant}.params")
    return load_model(variant, runtime=os.environ.get("HYBRIDSERVE_RUNTIME", "mxnet"),
                      weights_path=weights if os.path.exists(weights) else None)


def set_loader(loader: Loader | None) -> None:
    """Use `loader` for models loaded from now on (None: the default); forgets loaded models."""
    global _loader
    _loader = loader
    _models.clear()


def _model(variant: str) -> tuple[Any, bool, float]:
    """(model, cold, load_ms): loads on first use in this execution environment."""
    if variant in _models:
        return _models[variant], False, 0.0
    t0 = time.perf_counter()
    _models[variant] = (_loader or default_loader)(variant)
    return _models[variant], True, (time.perf_counter() - t0) * 1000.0


def decode_inputs(event: dict) -> np.ndarray:
    """The request's FP32 batch from a nested list or base64 bytes plus shape."""
    raw = event.get("inputs")
    if raw is None:
        raise ValueError("event has no 'inputs'")
    if isinstance(raw, dict) or isinstance(raw, str):
        data, shape = (raw.get("b64"), raw.get("shape")) if isinstance(raw, dict) else (raw, event.get("shape"))
        if not isinstance(data, str) or not shape:
            raise ValueError("base64 inputs need 'b64' (or a string) and 'shape'")
        try:
            arr = np.frombuffer(base64.b64decode(data, validate=True), dtype="<f4")
        except ValueError as e:
            raise ValueError(f"inputs are not valid base64 float32: {e}") from None
        if arr.size != int(np.prod(shape)):
            raise ValueError(f"{arr.size} floats do not fill shape {list(shape)}")
        return arr.reshape([int(s) for s in shape]).astype(np.float32)
    try:
        return np.asarray(raw, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise ValueError(f"inputs are not a rectangular FP32 tensor: {e}") from None


def _variant(event: dict) -> str:
    variant = event.get("model") or os.environ.get("HYBRIDSERVE_MODEL")
    if not variant:
        raise ValueError("no model: set 'model' in the event or HYBRIDSERVE_MODEL")
    return str(variant)


def handler(event: dict, context: Any = None) -> dict:
    t0 = time.perf_counter()
    request_id = getattr(context, "aws_request_id", None)
    if event.get("warmup"):
        _, cold, load_ms = _model(_variant(event))
        return {"warmup": True, "cold": cold, "load_ms": load_ms,
                "duration_ms": (time.perf_counter() - t0) * 1000.0, "request_id": request_id}
    variant = _variant(event)
    batch = decode_inputs(event)
    if batch.ndim < 2:
        raise ValueError(f"inputs must be a batch (N×...), got shape {list(batch.shape)}")
    if event.get("batch") is not None and int(event["batch"]) != batch.shape[0]:
        raise ValueError(f"'batch' is {event['batch']} but inputs hold {batch.shape[0]} samples")
    model, cold, load_ms = _model(variant)
    probs = np.asarray(model.predict(batch), dtype=np.float32)
    k = max(1, min(int(event.get("top_k", 1)), probs.shape[1]))
    # Best first; ties to the lower class id, as serving.runtimes.model.top_k.
    ids = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    out = {"model": variant, "class_ids": ids.tolist(),
           "scores": np.take_along_axis(probs, ids, axis=1).tolist(),
           "cold": cold, "load_ms": load_ms, "request_id": request_id}
    if hasattr(model, "label_of"):
        out["labels"] = model.label_of(ids).tolist()
    if event.get("return_probabilities"):
        out["probabilities"] = probs.tolist()
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is not None:
        out["remaining_ms"] = remaining()  # how close to the function timeout this ran
    out["duration_ms"] = (time.perf_counter() - t0) * 1000.0
    return out
