"""Smoke test of operator profiling at tiny sizes (mxnet, a few seconds): a small variant's
graph is extracted, each operator runs alone, the times are positive and add up to the same
order as the whole model."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mxnet")

from controller.profiler.cop.graph import critical_path_ms, from_gluon, total_ms  # noqa: E402
from controller.profiler.cop.profile import merge_rows, profile_here, time_model, time_op  # noqa: E402


def test_profile_ops_of_a_tiny_model(tmp_path):
    g = from_gluon("digits-small")
    assert len(g.nodes) >= 2
    assert all(n.flops_per_sample >= 0 for n in g.nodes)
    ops, models = profile_here([g], [1, 2], share=1.0, cpu_limit="threads", repeats=3)
    assert len(ops) == 2 * len(set(g.keys())) and len(models) == 2
    ms = {(r["op_key"], r["batch_size"]): float(r["latency_ms"]) for r in ops}
    assert all(np.isfinite(v) and v > 0 for v in ms.values())
    node_ms = [ms[(n.key, 1)] for n in g.nodes]
    assert critical_path_ms(g, node_ms) <= total_ms(g, node_ms) + 1e-9
    whole = float(models[0]["latency_ms"])
    # alone, operators pay their own dispatch; the sum stays within an order of magnitude
    assert whole / 20 < total_ms(g, node_ms) < whole * 20
    path = tmp_path / "op_latency.csv"
    merge_rows(str(path), list(ops[0]), ops, ("op_key", "batch_size", "cpu_share"))
    merge_rows(str(path), list(ops[0]), ops[:1], ("op_key", "batch_size", "cpu_share"))  # replaces, no dup
    assert len(path.read_text().strip().splitlines()) == len(ops) + 1


def test_one_convolution_alone_grows_with_batch():
    g = from_gluon("digits-small")
    conv = next(n for n in g.nodes if n.op.startswith("Convolution") or n.op.startswith("FullyConnected"))
    t1, lo1, n1, c1 = time_op(conv, 1, repeats=3)
    t64, _, _, _ = time_op(conv, 64, repeats=3)
    assert 0 < lo1 <= t1 and n1 >= 3 and c1 > 0
    assert t64 > 0
    ms, _, runs, cpu = time_model("digits-small", 1, repeats=3)
    assert ms > 0 and runs >= 3
