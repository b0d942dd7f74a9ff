"""`LoadedModel`: what every runtime hands back, whatever executes the graph (mxnet, onnxruntime).

Callers (Ray Serve replicas, local function workers, the Lambda handler) see one interface:
`predict(batch)` takes float32 N×C×H×W and returns N×classes probabilities; `top_k` gives the
class ids and scores the response carries. The runtime only supplies a `logits` function.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row max so large logits do not overflow exp()."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best classes per row, best first: (class ids int64 N×k, their scores float32 N×k).

    Ties go to the lower class id (a stable sort on the negated scores), so results are
    reproducible whatever the numpy build.
    """
    k = max(1, min(int(k), scores.shape[1]))
    ids = np.argsort(-scores, axis=1, kind="stable")[:, :k].astype(np.int64)
    return ids, np.take_along_axis(scores, ids, axis=1).astype(np.float32)


@dataclass
class LoadedModel:
    """A model variant ready to serve in this process."""

    variant: str
    runtime: str                              # "mxnet" | "onnxruntime"
    input_shape: tuple[int, int, int]         # C, H, W of one sample
    labels: tuple[str, ...]                   # one per class, index = class id
    weights: str                              # provenance: "file:<path>", "init:seed=<n>" or "trained:<path>"
    load_s: float                             # wall time to build/load (the cold-start cost of this runtime)
    accuracy: float | None = None             # measured top-1 on held-out data, when known (digits)
    _logits_fn: Callable[[np.ndarray], np.ndarray] = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def _check(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch)
        if batch.ndim != 4 or tuple(batch.shape[1:]) != tuple(self.input_shape):
            raise ValueError(f"{self.variant}: expected a batch of shape N×{'×'.join(map(str, self.input_shape))}, "
                             f"got {'×'.join(map(str, batch.shape))}")
        if batch.shape[0] == 0:
            raise ValueError(f"{self.variant}: empty batch")
        return np.ascontiguousarray(batch, dtype=np.float32)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Raw network outputs, N×classes float32."""
        return np.asarray(self._logits_fn(self._check(batch)), dtype=np.float32)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (softmax of the logits), N×classes float32; rows sum to 1."""
        return softmax(self.logits(batch))

    def top_k(self, batch: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """(class ids N×k, probabilities N×k), best first."""
        return top_k(self.predict(batch), k)

    def label_of(self, class_ids: np.ndarray) -> np.ndarray:
        """Labels for an array of class ids (same shape, dtype object)."""
        table = np.array(self.labels, dtype=object)
        return table[np.asarray(class_ids, dtype=np.int64)]
