"""The synthetic sweep (mxnet): shapes of no model, executed as MKLDNN-fused operators, and the
shape features read from their keys agree with the shapes mxnet inferred."""
from __future__ import annotations

import pytest

pytest.importorskip("mxnet")

from controller.profiler.cop.features import fit_group, op_features  # noqa: E402
from controller.profiler.cop.sweep import SWEEP, sweep_graphs  # noqa: E402


def test_sweep_is_deterministic_fused_and_bounded():
    graphs = sweep_graphs(12, seed=0)
    assert [g.keys() for g in graphs] == [g.keys() for g in sweep_graphs(12, seed=0)]
    assert all(g.model == SWEEP for g in graphs)
    nodes = [n for g in graphs for n in g.nodes]
    convs = [n for n in nodes if n.op.startswith("Convolution")]
    assert convs and all("+BatchNorm" in n.op for n in convs)  # conv + BN fused, as models execute
    assert all(n.flops_per_sample <= 2e9 for n in nodes)
    dw = sweep_graphs(4, seed=1, kinds=("dw3",))
    assert {fit_group(n.op_class) for g in dw for n in g.nodes} == {"conv/dw"}


def test_features_agree_with_inferred_shapes():
    for g in sweep_graphs(16, seed=2, kinds=("plain1", "plain3", "res3", "dw3")):
        for n in g.nodes:
            if not n.op.startswith("Convolution"):
                continue
            f = op_features(n.key, n.flops_per_sample)
            cin = n.in_shapes[0][0]
            groups = int(n.attrs.get("num_group", 1))
            k = 9 if "kernel=(3, 3)" in n.key else 1
            # FLOPs from mxnet's output shape = FLOPs from the features' output elements
            assert 2.0 * f["out_elems"] * cin / groups * k == pytest.approx(n.flops_per_sample)
            assert f["in_elems"] == pytest.approx(cin * n.in_shapes[0][1] * n.in_shapes[0][2])
