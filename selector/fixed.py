"""The baselines' selector: the same model for every request of a class, learning nothing."""
from __future__ import annotations

import numpy as np


class FixedSelector:
    """Always the same model per class (the baselines' router)."""

    def __init__(self, class_models: list[int]):
        self._models = np.asarray(class_models, dtype=np.int64)

    def select(self, class_idx: int, n: int, rng) -> np.ndarray:
        return np.full(n, self._models[class_idx], dtype=np.int64)

    def observe(self, *args) -> None:
        pass
