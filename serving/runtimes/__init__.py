"""Model runtimes: load a model variant for in-process inference, on mxnet or onnxruntime.

No Ray here: this is used inside Ray Serve replicas, local function worker processes and the
Lambda handler alike.

    model = load_model("squeezenet")                  # mxnet, deterministic init
    model = load_model("resnet50", weights_path="resnet50.params")
    model = load_model("squeezenet", runtime="onnxruntime")
    probs = model.predict(batch)                      # float32 N×C×H×W -> N×classes
"""
from __future__ import annotations

import os

from serving.runtimes.cache import cache_dir
from serving.runtimes.model import LoadedModel, softmax, top_k
from serving.runtimes.registry import (DIGITS_VARIANTS, VARIANTS, ModelSpec, UnknownVariant, imagenet_labels,
                                       list_variants, spec_of)

RUNTIMES = ("mxnet", "onnxruntime")

__all__ = ["load_model", "LoadedModel", "ModelSpec", "UnknownVariant", "list_variants", "spec_of", "RUNTIMES",
           "VARIANTS", "DIGITS_VARIANTS", "cache_dir", "softmax", "top_k", "imagenet_labels"]


def _read_labels(path: str, num_classes: int) -> tuple[str, ...]:
    with open(path) as fh:
        labels = tuple(line.strip() for line in fh if line.strip())
    if len(labels) != num_classes:
        raise ValueError(f"{path}: {len(labels)} labels, the model has {num_classes} classes")
    return labels


def load_model(variant: str, runtime: str = "mxnet", weights_path: str | None = None, *,
               labels_path: str | None = None, seed: int = 0, num_threads: int | None = None) -> LoadedModel:
    """Load `variant` for inference on `runtime` ("mxnet" or "onnxruntime").

    weights_path: a gluon `.params` file (`save_parameters` format) with real weights; without
      it ImageNet variants get a deterministic initialisation from `seed`, and digits variants
      their trained parameters (training on first use, cached under `cache_dir()`).
    labels_path: a text file with one class label per line (default: "imagenet-<i>" / "0".."9").
    num_threads: onnxruntime intra-op threads (mxnet reads OMP_NUM_THREADS instead).
    Raises UnknownVariant, ValueError for an unknown runtime, FileNotFoundError for a missing file.
    """
    spec = spec_of(variant)
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
    accuracy = None
    if spec.family == "digits":
        from serving import digits

        labels = digits.LABELS
        if weights_path is None:
            weights_path = digits.ensure_trained(variant)
            accuracy = digits.measured_accuracy(variant)
    else:
        labels = imagenet_labels()
    if labels_path is not None:
        labels = _read_labels(labels_path, spec.num_classes)
    if weights_path is not None:
        weights_path = os.path.abspath(weights_path)
    if runtime == "mxnet":
        from serving.runtimes import mxnet_runtime

        return mxnet_runtime.load(spec, labels, weights_path, seed, accuracy)
    from serving.runtimes import onnx_runtime

    return onnx_runtime.load(spec, labels, weights_path, seed, accuracy, num_threads)
