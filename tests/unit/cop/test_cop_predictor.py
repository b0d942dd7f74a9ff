"""COP predictor on a hand-made operator table: exact rows, FLOPs interpolation (predictor="nearest") when a shape
(or a held-out model's rows) is missing, calibration, batch and share interpolation, and the
catalog rows."""
from __future__ import annotations

import csv
import json

import pytest

from controller.profiler.cop.graph import OpGraph, OpNode
from controller.profiler.cop.predictor import (SOURCE, OpTable, function_latency_rows, graph_to_dict, load_graph,
                                               predict_latency_ms)

CLS = "Convolution/3x3/dense"


def conv(name, key, flops, inputs=()):
    return OpNode(name, "Convolution", key, CLS, flops, tuple(inputs))


GRAPHS = {
    # a: chain of two convs; b: a branch (c1 || c2) after c0; c: one conv shape nobody else has
    "a": OpGraph("a", (conv("x", "k1", 1e6), conv("y", "k2", 4e6, [0]))),
    "b": OpGraph("b", (conv("x", "k1", 1e6), conv("y", "k2", 4e6, [0]), conv("z", "k3", 16e6, [0]))),
    "c": OpGraph("c", (conv("x", "k4", 2e6),)),
}


def op_ms(flops, batch, share):
    return flops / 1e6 * batch / share  # 1 ms per MFLOP per sample at one CPU


def write_table(d, measured_scale=1.5):
    with open(d / "op_latency.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["op_key", "op", "op_class", "flops_per_sample", "batch_size", "cpu_share", "latency_ms", "min_ms",
                    "repeats", "models", "cpu_limit"])
        for key, flops, models in (("k1", 1e6, "a;b"), ("k2", 4e6, "a;b"), ("k3", 16e6, "b"), ("k4", 2e6, "c")):
            for b in (1, 4):
                for s in (0.5, 1.0):
                    w.writerow([key, "Convolution", CLS, flops, b, s, op_ms(flops, b, s), 0, 3, models, "threads"])
    with open(d / "model_latency.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "batch_size", "cpu_share", "latency_ms", "min_ms", "repeats", "num_ops", "cpu_limit"])
        for m, g in GRAPHS.items():
            for b in (1, 4):
                for s in (0.5, 1.0):
                    total = sum(op_ms(n.flops_per_sample, b, s) for n in g.nodes)
                    w.writerow([m, b, s, measured_scale * total, 0, 3, len(g.nodes), "threads"])
    with open(d / "model_graphs.json", "w") as fh:
        json.dump({m: graph_to_dict(g) for m, g in GRAPHS.items()}, fh)


@pytest.fixture()
def table_dir(tmp_path):
    write_table(tmp_path)
    load_graph.cache_clear()
    yield str(tmp_path)
    load_graph.cache_clear()


def test_exact_rows_sum_and_branch_max(table_dir):
    t = OpTable(table_dir, predictor="nearest")
    g = load_graph("b", table_dir)
    assert t.raw_ms(g, 1, 1.0, "serial") == pytest.approx(1 + 4 + 16)
    assert t.raw_ms(g, 1, 1.0, "critical_path") == pytest.approx(1 + 16)


def test_held_out_model_interpolates_by_flops(table_dir):
    t = OpTable(table_dir, predictor="nearest")
    g = load_graph("c", table_dir)
    # k4 (2 MFLOPs) only in c: held out, it lies between k1 (1 ms) and k2 (4 ms) log-log -> 2 ms
    assert t.raw_ms(g, 1, 1.0, exclude="c") == pytest.approx(2.0)
    # k3 is only in b: leaving b out, its time comes from the class slope beyond k2 (exactly linear)
    assert t.raw_ms(load_graph("b", table_dir), 4, 0.5, exclude="b") == pytest.approx(op_ms(21e6, 4, 0.5))


def test_calibration_is_measured_over_predicted_of_the_others(table_dir):
    t = OpTable(table_dir, predictor="nearest")
    assert t.calibration(1, 1.0, exclude="c") == pytest.approx(1.5)
    assert predict_latency_ms("c", 1, 1.0, exclude_model="c", directory=table_dir) == pytest.approx(1.5 * 2.0)


def test_batch_and_share_interpolation(table_dir):
    one = predict_latency_ms("a", 1, 1.0, directory=table_dir)
    four = predict_latency_ms("a", 4, 1.0, directory=table_dir)
    assert predict_latency_ms("a", 2, 1.0, directory=table_dir) == pytest.approx(one + (four - one) / 3)
    half = predict_latency_ms("a", 1, 0.5, directory=table_dir)
    assert half == pytest.approx(2 * one)
    # log-linear between shares: 1/share here is exact
    assert predict_latency_ms("a", 1, 0.7071, directory=table_dir) == pytest.approx(one / 0.7071, rel=1e-3)
    assert predict_latency_ms("a", 1, 0.25, directory=table_dir) == pytest.approx(4 * one)  # quota-bound
    assert predict_latency_ms("a", 1, 3.0, directory=table_dir) == pytest.approx(one)  # held


def test_catalog_rows(table_dir):
    rows = function_latency_rows("a", [1769, 884.5], [1, 4], directory=table_dir)
    assert len(rows) == 4 and all(r["source"] == SOURCE for r in rows)
    assert rows[0]["latency_ms"] == pytest.approx(1.5 * 5.0, abs=0.05)
    assert rows[2]["latency_ms"] == pytest.approx(2 * 1.5 * 5.0, abs=0.05)


def test_more_cpu_is_never_predicted_slower(tmp_path):
    write_table(tmp_path)
    # make the share-1 rows of model "a" measure slower than share 0.5 (a contended wall clock)
    rows = (tmp_path / "op_latency.csv").read_text().splitlines()
    def slower(row):  # column 6 is latency_ms; column 5 the share
        cells = row.split(",")
        if cells[5] == "1.0":
            cells[6] = str(float(cells[6]) * 5)
        return ",".join(cells)
    out = [rows[0]] + [slower(r) for r in rows[1:]]
    (tmp_path / "op_latency.csv").write_text("\n".join(out) + "\n")
    load_graph.cache_clear()
    half = predict_latency_ms("a", 1, 0.5, directory=str(tmp_path))
    assert predict_latency_ms("a", 1, 1.0, directory=str(tmp_path)) <= half + 1e-9
    assert predict_latency_ms("a", 1, 0.75, directory=str(tmp_path)) <= half + 1e-9
    load_graph.cache_clear()
