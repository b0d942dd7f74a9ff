"""Serve a variant with onnxruntime, from a graph exported once by mxnet's ONNX exporter.

The export (mxnet gluon -> symbol + params -> `mxnet.onnx.export_model`, which needs
onnx==1.14.1) is cached under `<cache>/onnx/` keyed by variant and weights (the digest of the
`.params` file, or the init seed), so a cold start after the first pays only the session build.
The batch dimension is exported as dynamic, so one graph serves every batch size.
"""
from __future__ import annotations

import os
import tempfile
import time
import warnings

import numpy as np

from serving.runtimes import mxnet_runtime
from serving.runtimes.cache import atomic_path, cache_dir, file_digest
from serving.runtimes.model import LoadedModel
from serving.runtimes.registry import ModelSpec


def onnx_path(spec: ModelSpec, weights_path: str | None, seed: int) -> str:
    key = f"w{file_digest(weights_path)}" if weights_path else f"seed{seed}"
    return os.path.join(cache_dir("onnx"), f"{spec.variant}-{key}.onnx")


def _strip_initializer_inputs(model) -> None:
    """Drop weights from the graph's inputs.

    mxnet's exporter lists every initializer as a graph input too; onnxruntime then treats the
    weights as overridable, warns once per tensor and skips constant folding.
    """
    init_names = {t.name for t in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in init_names]
    del model.graph.input[:]
    model.graph.input.extend(keep)


def export(spec: ModelSpec, weights_path: str | None = None, seed: int = mxnet_runtime.DEFAULT_SEED) -> str:
    """Export the variant to ONNX unless already cached; return the .onnx path."""
    path = onnx_path(spec, weights_path, seed)
    if os.path.isfile(path):
        return path
    import onnx
    from mxnet import onnx as mx_onnx

    net, _ = mxnet_runtime.build_net(spec, weights_path, seed)
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, spec.variant)
        net.export(prefix)  # writes <prefix>-symbol.json and <prefix>-0000.params
        with atomic_path(path) as tmp_onnx, warnings.catch_warnings():
            # The exporter uses onnx.mapping, deprecated in onnx 1.14: one warning per tensor.
            warnings.simplefilter("ignore", DeprecationWarning)
            mx_onnx.export_model(f"{prefix}-symbol.json", f"{prefix}-0000.params",
                                 in_shapes=[(1,) + spec.input_shape], in_types=[np.float32],
                                 onnx_file_path=tmp_onnx, dynamic=True,
                                 dynamic_input_shapes=[("batch",) + spec.input_shape])
            model = onnx.load(tmp_onnx)
            _strip_initializer_inputs(model)
            onnx.save(model, tmp_onnx)
    return path


def load(spec: ModelSpec, labels: tuple[str, ...], weights_path: str | None = None,
         seed: int = mxnet_runtime.DEFAULT_SEED, accuracy: float | None = None,
         num_threads: int | None = None) -> LoadedModel:
    import onnxruntime as ort

    t0 = time.perf_counter()
    path = export(spec, weights_path, seed)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only
    if num_threads:
        opts.intra_op_num_threads = num_threads
    session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    output_name = session.get_outputs()[0].name

    def logits(batch: np.ndarray) -> np.ndarray:
        # InferenceSession.run is thread-safe, so no lock here.
        return session.run([output_name], {input_name: batch})[0]

    provenance = f"file:{weights_path}" if weights_path else f"init:seed={seed}"
    return LoadedModel(variant=spec.variant, runtime="onnxruntime", input_shape=spec.input_shape, labels=labels,
                       weights=provenance, load_s=time.perf_counter() - t0, accuracy=accuracy,
                       _logits_fn=logits)
