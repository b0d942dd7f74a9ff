"""COP's fitted operator model: latency of an operator by shape from features of the shape,
fitted per operator group on profiled rows, plus the model-level terms that turn a sum of
operators run alone into a whole model's latency.

Per group (controller.profiler.cop.features.fit_group) and CPU regime, an operator at batch b takes

    t = dispatch + w_weights * weight_elems
        + b * (w_flops * flops + w_in * in_elems + w_out * out_elems + w_add * add_elems)

with every coefficient >= 0 (non-negative least squares), so a prediction is positive and never
falls as the batch grows, and a roofline-like sum generalises to shapes no profiled model has
(unlike interpolating between the nearest profiled FLOPs). Rows are weighted by 1 / measured,
so the fit minimises relative error: a 0.1 ms operator counts as much as a 100 ms one.

CPU regime: below one CPU a quota stretches CPU work by 1 / share, so rows of every share <= 1
are pooled as CPU work (ms x share) and a prediction divides by the share; above one CPU the
threads' overlap is whatever was measured, so each share is its own regime.

Model terms (`fit_model_terms`), fitted on models other than the one predicted: measured ~
alpha x sum of operators, alpha the median ratio per (regime, batch size) (default) or per
regime; or alpha x sum + per_op_ms x n_ops + fixed_ms, non-negative, per regime ("affine").
alpha < 1 where running alone pays layout reorders a model does not, per_op_ms is the
executor's dispatch per operator, fixed_ms the per-call cost.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np
from scipy.optimize import nnls

from controller.profiler.cop.features import PER_BATCH, PER_SAMPLE, fit_group, op_features

COLUMNS = ("dispatch",) + PER_BATCH + PER_SAMPLE


@dataclass(frozen=True)
class OpSample:
    """One profiled operator timing: an operator by shape at (batch, share)."""

    key: str
    op_class: str
    flops: float
    batch: int
    share: float
    ms: float
    models: frozenset  # the models it was profiled for ("sweep" for synthetic shapes)


def regime_of(share: float) -> float:
    """Shares <= 1 pool as CPU work (1.0); above, each share is its own regime."""
    return 1.0 if share <= 1.0 else float(share)


def work_scale(share: float) -> float:
    """Factor from latency to the regime's unit: CPU work (ms x share) below one CPU."""
    return float(share) if share <= 1.0 else 1.0


@lru_cache(maxsize=None)
def _features(key: str, flops: float) -> tuple[float, ...]:
    f = op_features(key, flops)
    return tuple(f[c] for c in PER_BATCH + PER_SAMPLE)


def design_row(key: str, flops: float, batch: float) -> np.ndarray:
    """[1, per-batch features..., batch x per-sample features...] of one operator at `batch`."""
    f = _features(key, float(flops))
    n_b = len(PER_BATCH)
    return np.array((1.0,) + f[:n_b] + tuple(batch * x for x in f[n_b:]))


def nnls_relative(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative coefficients minimising sum(((x @ c - y) / y)^2). Columns are scaled to
    unit maximum first (features span 1 to 1e10), and unscaled on the way out."""
    scale = np.abs(x).max(axis=0)
    scale[scale == 0] = 1.0
    w = 1.0 / np.maximum(y, 1e-9)
    coef, _ = nnls((x / scale) * w[:, None], y * w, maxiter=50 * x.shape[1])
    return coef / scale


@dataclass(frozen=True)
class OpModel:
    """Fitted coefficients per (regime, group); `trained_on` names every model whose rows went
    in (leave-one-model-out is checked against it)."""

    coefs: dict
    trained_on: frozenset = field(default_factory=frozenset)
    n_rows: int = 0

    def predict_ms(self, key: str, op_class: str, flops: float, batch: float, share: float) -> float:
        group = fit_group(op_class)
        regimes = [r for (r, g) in self.coefs if g == group]
        if not regimes:
            return 0.0
        want = regime_of(share)
        regime = min(regimes, key=lambda r: abs(np.log(r / want)))
        work = float(design_row(key, flops, batch) @ self.coefs[(regime, group)])
        return work / work_scale(share) if regime == 1.0 else work


def fit_op_model(samples: Iterable[OpSample]) -> OpModel:
    """One non-negative fit per (regime, group) over `samples`."""
    by: dict[tuple[float, str], list[OpSample]] = {}
    trained: set[str] = set()
    n = 0
    for s in samples:
        if s.ms <= 0:
            continue
        by.setdefault((regime_of(s.share), fit_group(s.op_class)), []).append(s)
        trained |= set(s.models)
        n += 1
    coefs = {}
    for k, rows in by.items():
        x = np.array([design_row(r.key, r.flops, r.batch) for r in rows])
        y = np.array([r.ms * work_scale(r.share) for r in rows])
        coefs[k] = nnls_relative(x, y)
    return OpModel(coefs, frozenset(trained), n)


# --- model-level terms ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelPoint:
    """A measured model at (batch, share) and the sum of its operators predicted for it."""

    model: str
    batch: int
    share: float
    raw_ms: float
    n_ops: int
    measured_ms: float


@dataclass(frozen=True)
class ModelTerms:
    """(alpha, per_op_ms, fixed_ms) per (regime, batch), in the regime's unit (CPU work below one
    CPU); batch None where one set serves every batch size."""

    by_key: dict
    trained_on: frozenset = field(default_factory=frozenset)

    def apply(self, raw_ms: float, n_ops: int, share: float, batch: float = 1) -> float:
        if not self.by_key:
            return raw_ms
        want = regime_of(share)
        regime = min({r for r, _ in self.by_key}, key=lambda r: abs(np.log(r / want)))
        batches = [b for r, b in self.by_key if r == regime]
        # the nearest profiled batch (log scale) where terms differ by batch size
        b = None if None in batches else min(batches, key=lambda x: abs(np.log(x / batch)))
        alpha, per_op, fixed = self.by_key[(regime, b)]
        return alpha * raw_ms + (per_op * n_ops + fixed) / work_scale(share)


def fit_model_terms(points: Sequence[ModelPoint], kind: str = "batch-factor") -> ModelTerms:
    """kind "factor": alpha alone per regime, the median of measured / predicted; "batch-factor":
    the same per (regime, batch size), since running operators alone overstates a model more at
    small batches (per-operator reorders and dispatch weigh more); "affine": alpha, per-operator
    and fixed terms per regime, non-negative least squares on relative error."""
    by: dict[tuple, list[ModelPoint]] = {}
    for p in points:
        if p.raw_ms > 0 and p.measured_ms > 0:
            by.setdefault((regime_of(p.share), p.batch if kind == "batch-factor" else None), []).append(p)
    out = {}
    for k, pts in by.items():
        if kind in ("factor", "batch-factor"):
            out[k] = (float(np.median([p.measured_ms / p.raw_ms for p in pts])), 0.0, 0.0)
            continue
        ws = np.array([work_scale(p.share) for p in pts])
        # the operators' sum in the regime's unit; the per-op and fixed terms are fitted in it
        x = np.array([[p.raw_ms * w, p.n_ops, 1.0] for p, w in zip(pts, ws)])
        y = np.array([p.measured_ms for p in pts]) * ws
        c = nnls_relative(x, y)
        out[k] = (float(c[0]), float(c[1]), float(c[2]))
    return ModelTerms(out, frozenset(p.model for p in points))
