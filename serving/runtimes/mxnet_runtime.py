"""Build a variant as a hybridized mxnet gluon network and serve it in this process.

Weights come from a gluon `.params` file when one is given (`net.save_parameters` format),
else from a deterministic initialisation: a fixed mxnet seed before `initialize`, so every
process (replica, function worker, Lambda) builds the same network and gives the same answers.
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np

from serving.runtimes.model import LoadedModel
from serving.runtimes.registry import ModelSpec

DEFAULT_SEED = 0
# mx.random.seed is process-global: two threads building nets at once would interleave draws.
_BUILD_LOCK = threading.Lock()


def build_block(spec: ModelSpec):
    """The uninitialised gluon HybridBlock of a variant."""
    if spec.family == "digits":
        from serving import digits  # lazily: digits imports this package

        return digits.build_block(spec.variant)
    from mxnet.gluon.model_zoo import vision

    return vision.get_model(spec.arch, pretrained=False, classes=spec.num_classes)


def build_net(spec: ModelSpec, weights_path: str | None = None, seed: int = DEFAULT_SEED):
    """An initialised, hybridized HybridBlock on the CPU, and its weights provenance string."""
    import mxnet as mx

    with _BUILD_LOCK:
        net = build_block(spec)
        if weights_path is not None:
            if not os.path.isfile(weights_path):
                raise FileNotFoundError(f"{spec.variant}: weights file not found: {weights_path}")
            # Strict: a file for another architecture fails here rather than serving garbage.
            net.load_parameters(weights_path, ctx=mx.cpu())
            provenance = f"file:{weights_path}"
        else:
            mx.random.seed(seed)
            net.initialize(mx.init.Xavier(magnitude=2.0), ctx=mx.cpu())
            provenance = f"init:seed={seed}"
        # static_alloc/static_shape reuse memory between calls of the same batch size: the
        # cached graph is the fast path, and replicas see a few recurring batch sizes.
        net.hybridize(static_alloc=True, static_shape=True)
        # One forward pass materialises deferred shapes and the cached graph (needed by export).
        net(mx.nd.zeros((1,) + spec.input_shape, dtype="float32"))
    return net, provenance


def load(spec: ModelSpec, labels: tuple[str, ...], weights_path: str | None = None,
         seed: int = DEFAULT_SEED, accuracy: float | None = None) -> LoadedModel:
    import mxnet as mx

    t0 = time.perf_counter()
    net, provenance = build_net(spec, weights_path, seed)
    lock = threading.Lock()  # a cached graph is not safe to run from two threads at once

    def logits(batch: np.ndarray) -> np.ndarray:
        with lock:
            return net(mx.nd.array(batch, dtype="float32")).asnumpy()

    return LoadedModel(variant=spec.variant, runtime="mxnet", input_shape=spec.input_shape, labels=labels,
                       weights=provenance, load_s=time.perf_counter() - t0, accuracy=accuracy,
                       _logits_fn=logits)
