"""COP predictor: a model's latency at (batch, CPU share) from the operator-profile table.

1. The model's operator graph (controller.profiler.cop.graph; cached in model_graphs.json, so prediction
   needs no mxnet).
2. Each operator's time at (batch, share), `predictor=`:
   - "fitted" (default): a non-negative per-group model of the shape's features (FLOPs, data
     read and written, weights, dispatch; controller.profiler.cop.fit) fitted on every profiled row the
     prediction may use (the other models' operators and the synthetic sweep). With
     lookup=True an operator-by-shape profiled for another model takes its row instead.
   - "nearest": its profiled row when that operator-by-shape was measured, else interpolated by
     FLOPs among the measured operators of its class (log-log between the two nearest, or
     scaled along the class's fitted log-log slope beyond them).
3. Combined along the graph: `mode="serial"` sums every operator (mxnet on CPU runs them one
   after another, each on every core it is given: the right rule here), `mode="critical_path"`
   is INFless's rule (sum along chains, maximum over parallel branches).
4. Calibrated, for what running operators alone misses (layout reorders between operators,
   the executor's per-call overhead). "fitted": model terms (controller.profiler.cop.fit.fit_model_terms:
   alpha per (CPU regime, batch), `terms="batch-factor"`; alpha per regime, "factor"; alpha x
   sum + per-operator + fixed, "affine");
   "nearest": one factor (or one per (batch, share)), the median of measured / predicted.
   Both are learnt on the profiled models, each predicted as if held out itself. Leaving a
   model out removes its rows from the operator fit or table (operators only it contains)
   and from the calibration: that is how bench/cop_accuracy.py tests the prediction of a
   model never profiled.
Between profiled batch sizes latency is interpolated linearly; between shares log-linearly in
both; below the smallest share it grows as 1/share (a CPU quota), above the largest it is held.
"""
from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from controller.config import REPO_ROOT
from controller.profiler.cop.fit import ModelPoint, ModelTerms, OpModel, OpSample, fit_model_terms, fit_op_model
from controller.profiler.cop.graph import OpGraph, OpNode, critical_path_ms, total_ms

PROFILE_DIR = os.path.join(REPO_ROOT, "configs", "catalog", "operator_profiles")
SOURCE = "predicted (COP)"


def _value(row: dict, column: str) -> float:
    """The row's figure in `column`, the wall median where that column is empty (rows from
    before it existed, or shares where it is not defined)."""
    v = row.get(column) or row["latency_ms"]
    return float(v)


def _as_set(exclude) -> frozenset:
    """Models whose measurements are to be ignored: None, one name, or a set of names."""
    if exclude is None:
        return frozenset()
    return frozenset([exclude]) if isinstance(exclude, str) else frozenset(exclude)


@dataclass(frozen=True)
class OpRow:
    key: str
    op_class: str
    flops: float
    latency_ms: float
    models: frozenset


class OpTable:
    """The operator-profile catalog data: op_latency.csv and model_latency.csv."""

    def __init__(self, directory: str = PROFILE_DIR, column: str = "cpu_ms", calibration_scope: str = "global",
                 predictor: str = "fitted", terms: str = "batch-factor", lookup: bool = False):
        """column: "latency_ms" (wall median of repeats), "min_ms" (their minimum) or "cpu_ms"
        (CPU time per run / share, for shares <= 1: what other processes on a shared machine
        do not disturb); operators and models alike. predictor, terms, lookup: see the module
        docstring (calibration_scope applies to "nearest")."""
        self.directory = directory
        self.column = column
        self.predictor = predictor
        self.terms = terms
        self.lookup = lookup
        # "cell": one factor per (batch, share); "global": one factor over every measured point
        self.calibration_scope = calibration_scope
        self.rows: dict[tuple[int, float], dict[str, OpRow]] = {}  # (batch, share) -> key -> row
        with open(os.path.join(directory, "op_latency.csv"), newline="") as fh:
            for r in csv.DictReader(fh):
                cell = self.rows.setdefault((int(r["batch_size"]), float(r["cpu_share"])), {})
                cell[r["op_key"]] = OpRow(r["op_key"], r["op_class"], float(r["flops_per_sample"]),
                                          _value(r, column), frozenset(r["models"].split(";")))
        self.measured: dict[tuple[str, int, float], float] = {}
        path = os.path.join(directory, "model_latency.csv")
        if os.path.exists(path):
            with open(path, newline="") as fh:
                for r in csv.DictReader(fh):
                    self.measured[(r["model"], int(r["batch_size"]), float(r["cpu_share"]))] = _value(r, column)
        self._calibration: dict[tuple, float] = {}
        self._interpolated: dict[tuple, float] = {}
        self._op_models: dict[frozenset, OpModel] = {}
        self._terms: dict[tuple, ModelTerms] = {}
        self.batches = sorted({b for b, _ in self.rows})
        self.shares = sorted({s for _, s in self.rows})

    # --- one operator ----------------------------------------------------------------------
    def node_ms(self, node: OpNode, batch: int, share: float, exclude: str | None = None) -> float:
        cell = self.rows.get((batch, share), {})
        row = cell.get(node.key)
        if self.predictor == "fitted":
            if self.lookup and row is not None and row.models - _as_set(exclude):
                return row.latency_ms
            return self.op_model(exclude).predict_ms(node.key, node.op_class, node.flops_per_sample, batch, share)
        if row is not None and row.models - _as_set(exclude):
            return row.latency_ms
        # the same shape recurs across nodes, models and calibration passes: interpolate it once
        ck = (node.key, node.op_class, node.flops_per_sample, batch, share, _as_set(exclude))
        if ck not in self._interpolated:
            self._interpolated[ck] = self._interpolate(node, cell, exclude)
        return self._interpolated[ck]

    def samples(self, exclude=None) -> list[OpSample]:
        """Every profiled operator row not measured only for an excluded model."""
        excluded = _as_set(exclude)
        return [OpSample(r.key, r.op_class, r.flops, b, s, r.latency_ms, r.models)
                for (b, s), cell in sorted(self.rows.items()) for r in cell.values() if r.models - excluded]

    def op_model(self, exclude=None) -> OpModel:
        """The fitted operator model on `samples(exclude)` (cached per excluded set)."""
        k = _as_set(exclude)
        if k not in self._op_models:
            self._op_models[k] = fit_op_model(self.samples(k))
        return self._op_models[k]

    def model_terms(self, mode: str = "serial", exclude=None) -> ModelTerms:
        """Model terms fitted on the measured models other than `exclude`, each model's operator
        sum predicted with that model held out too (as the terms will be used)."""
        excluded = _as_set(exclude)
        ck = (mode, excluded)
        if ck not in self._terms:
            points = [ModelPoint(m, b, s, self.raw_ms(load_graph(m, self.directory), b, s, mode, excluded | {m}),
                                 len(load_graph(m, self.directory).nodes), ms)
                      for (m, b, s), ms in sorted(self.measured.items()) if m not in excluded]
            self._terms[ck] = fit_model_terms(points, self.terms)
        return self._terms[ck]

    @staticmethod
    def _interpolate(node: OpNode, cell: dict[str, OpRow], exclude: str | None) -> float:
        def pool(match):
            return [r for r in cell.values() if match(r) and r.models - _as_set(exclude) and r.flops > 0]
        # Its class, else the class without the fused tail (a 1x1 conv+BN+add+ReLU borrows
        # from 1x1 conv+BN+ReLU), else the operator family (any Convolution).
        same = pool(lambda r: r.op_class == node.op_class)
        if len(same) < 2:
            base = node.op_class.split("+")[0]
            same = pool(lambda r: r.op_class.split("+")[0] == base) or same
        if len(same) < 2:
            family = node.op_class.split("/")[0].split("+")[0]
            same = pool(lambda r: r.op_class.split("/")[0].split("+")[0] == family) or same
        if not same or node.flops_per_sample <= 0:
            return 0.0
        x = np.log([r.flops for r in same])
        y = np.log([max(r.latency_ms, 1e-6) for r in same])
        x0 = math.log(node.flops_per_sample)
        order = np.argsort(x)
        x, y = x[order], y[order]
        slope = float(np.clip(np.polyfit(x, y, 1)[0], 0.0, 1.2)) if np.ptp(x) > 0 and len(x) >= 2 else 1.0
        if x[0] <= x0 <= x[-1] and np.ptp(x) > 0:
            i = int(np.clip(np.searchsorted(x, x0), 1, len(x) - 1))
            if x[i] > x[i - 1]:
                return float(np.exp(y[i - 1] + (y[i] - y[i - 1]) * (x0 - x[i - 1]) / (x[i] - x[i - 1])))
        near = int(np.argmin(np.abs(x - x0)))
        return float(np.exp(y[near] + slope * (x0 - x[near])))

    # --- one model at a profiled (batch, share) --------------------------------------------------
    def raw_ms(self, graph: OpGraph, batch: int, share: float, mode: str = "serial", exclude: str | None = None) -> float:
        ms = [self.node_ms(n, batch, share, exclude) for n in graph.nodes]
        return total_ms(graph, ms) if mode == "serial" else critical_path_ms(graph, ms)

    def calibration(self, batch: int, share: float, mode: str = "serial", exclude: str | None = None) -> float:
        """Median of measured / raw prediction over the measured models other than `exclude`
        (each predicted as if held out itself, so the factor is learnt the way it is used), at
        this (batch, share) or, with calibration_scope="global", over all of them."""
        ck = (batch, share, mode, exclude)
        if ck not in self._calibration:
            ratios = []
            excluded = _as_set(exclude)
            for (m, b, s), ms in self.measured.items():
                same_cell = (b == batch and s == share) or self.calibration_scope == "global"
                if same_cell and m not in excluded:
                    raw = self.raw_ms(load_graph(m, self.directory), b, s, mode, exclude=_as_set(exclude) | {m})
                    if raw > 0:
                        ratios.append(ms / raw)
            self._calibration[ck] = float(np.median(ratios)) if ratios else 1.0
        return self._calibration[ck]

    def predict_profiled_ms(self, graph: OpGraph, batch: int, share: float, mode: str = "serial",
                            exclude: str | None = None, calibrate: bool = True) -> float:
        raw = self.raw_ms(graph, batch, share, mode, exclude)
        if not calibrate:
            return raw
        if self.predictor == "fitted":
            return self.model_terms(mode, exclude).apply(raw, len(graph.nodes), share, batch)
        return raw * self.calibration(batch, share, mode, exclude)

    # --- any batch and share -------------------------------------------------------------------
    def predict_ms(self, graph: OpGraph, batch: float, share: float, mode: str = "serial",
                   exclude: str | None = None) -> float:
        bs, ss = np.array(self.batches, float), np.array(self.shares, float)

        def at_share(s: float) -> float:
            # linear in batch between profiled sizes, extrapolated from the last two beyond
            vals = np.array([self.predict_profiled_ms(graph, int(b), s, mode, exclude) for b in bs])
            if batch <= bs[-1] or bs.size < 2:
                return float(np.interp(batch, bs, vals))
            return float(vals[-1] + (vals[-1] - vals[-2]) / (bs[-1] - bs[-2]) * (batch - bs[-1]))

        # More CPU never makes a model slower: where a larger share measured slower (wall-clock
        # rows on a contended machine), the smaller share's figure stands.
        v = np.minimum.accumulate(np.array([at_share(float(x)) for x in ss]))
        if share <= ss[0]:
            return float(v[0] * ss[0] / share)
        if share >= ss[-1]:
            return float(v[-1])
        i = int(np.searchsorted(ss, share))
        lo, hi = float(v[i - 1]), float(v[i])
        t = (math.log(share) - math.log(ss[i - 1])) / (math.log(ss[i]) - math.log(ss[i - 1]))
        return float(math.exp(math.log(lo) + t * (math.log(hi) - math.log(lo))))


# --- graphs, cached as data -----------------------------------------------------------------------
def _graphs_path(directory: str = PROFILE_DIR) -> str:
    return os.path.join(directory, "model_graphs.json")


def graph_to_dict(g: OpGraph) -> dict:
    return {"model": g.model, "nodes": [[n.name, n.op, n.key, n.op_class, n.flops_per_sample, list(n.inputs)]
                                        for n in g.nodes]}


def graph_from_dict(d: dict) -> OpGraph:
    return OpGraph(d["model"], tuple(OpNode(name, op, key, cls, float(fl), tuple(inp))
                                     for name, op, key, cls, fl, inp in d["nodes"]))


@lru_cache(maxsize=None)
def load_graph(model: str, directory: str = PROFILE_DIR) -> OpGraph:
    """The model's operator graph from model_graphs.json, else extracted with mxnet."""
    path = _graphs_path(directory)
    if os.path.exists(path):
        with open(path) as fh:
            cached = json.load(fh)
        if model in cached:
            return graph_from_dict(cached[model])
    from controller.profiler.cop.graph import from_gluon

    return from_gluon(model)


def cached_graph_models(directory: str = PROFILE_DIR) -> set[str]:
    """Models whose operator graph is cached in model_graphs.json (predictable without mxnet)."""
    with open(_graphs_path(directory)) as fh:
        return set(json.load(fh))


def save_graphs(models: list[str], directory: str = PROFILE_DIR) -> None:
    from controller.profiler.cop.graph import from_gluon

    path = _graphs_path(directory)
    cached = json.load(open(path)) if os.path.exists(path) else {}
    for m in models:
        cached[m] = graph_to_dict(from_gluon(m))
    with open(path, "w") as fh:
        json.dump(cached, fh, indent=0, sort_keys=True)


@lru_cache(maxsize=4)
def load_table(directory: str = PROFILE_DIR) -> OpTable:
    return OpTable(directory)


# --- public API -----------------------------------------------------------------------------------
def predict_latency_ms(model: str, batch: float, cpu_share: float, *, mode: str = "serial",
                       exclude_model: str | None = None, directory: str = PROFILE_DIR) -> float:
    """Predicted latency (ms) of `model` at `batch` with `cpu_share` CPUs on this machine's
    profile. exclude_model: predict as if that model had never been profiled."""
    return load_table(directory).predict_ms(load_graph(model, directory), batch, cpu_share, mode, exclude_model)


def function_latency_rows(model: str, memory_grid_mb, batches, *, mb_per_vcpu: float = 1769.0,
                          directory: str = PROFILE_DIR) -> list[dict]:
    """Rows in the shape of configs/catalog/function_latency.csv for a model with no measured
    profile: CPU share = memory / mb_per_vcpu (Lambda's rule), source "predicted (COP)".
    (controller/profiler/predicted_rows.py writes these predictions, scaled to a catalog's
    platform, as its function_latency_predicted.csv for the models it has not measured.)"""
    rows = []
    for m in memory_grid_mb:
        for b in batches:
            ms = predict_latency_ms(model, b, m / mb_per_vcpu, directory=directory)
            rows.append({"model": model, "memory_mb": int(m), "batch_size": int(b), "latency_ms": round(ms, 1),
                         "source": SOURCE})
    return rows


if __name__ == "__main__":  # python -m controller.profiler.cop.predictor MODEL... : cache their graphs
    import sys

    save_graphs(sys.argv[1:] or ["squeezenet", "mobilenet", "resnet18", "resnet50", "inception"])
