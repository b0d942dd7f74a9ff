"""COP graph arithmetic on hand-made graphs: chains sum, parallel branches take the maximum;
FLOPs and keys of operators by shape."""
from __future__ import annotations

import json

import pytest

from controller.profiler.cop.graph import (OpGraph, OpNode, critical_path_ms, from_symbol_json, op_class,
                                           op_flops_per_sample, op_key, total_ms)


def node(i, inputs=()):
    return OpNode(f"n{i}", "Convolution", f"k{i}", "Convolution/1x1/dense", 1.0, tuple(inputs))


def test_chain_sums():
    g = OpGraph("chain", tuple(node(i, [i - 1] if i else []) for i in range(4)))
    assert critical_path_ms(g, [1, 2, 3, 4]) == pytest.approx(10)
    assert total_ms(g, [1, 2, 3, 4]) == pytest.approx(10)


def test_fire_module_takes_the_longer_branch():
    # squeeze -> {expand1x1, expand3x3} -> concat -> next
    g = OpGraph("fire", (node(0), node(1, [0]), node(2, [0]), node(3, [1, 2]), node(4, [3])))
    assert critical_path_ms(g, [1, 2, 5, 1, 1]) == pytest.approx(1 + 5 + 1 + 1)
    assert total_ms(g, [1, 2, 5, 1, 1]) == pytest.approx(10)


def test_nested_branches_and_a_residual_skip():
    # inception-like: 0 -> {1 -> 2, 3, 4 -> 5 -> 6} -> 7 ; plus resnet skip 7 -> 9 and 7 -> 8 -> 9
    g = OpGraph("nested", (node(0), node(1, [0]), node(2, [1]), node(3, [0]), node(4, [0]), node(5, [4]),
                           node(6, [5]), node(7, [2, 3, 6]), node(8, [7]), node(9, [7, 8])))
    t = [1, 2, 2, 5, 1, 1, 1, 1, 3, 1]
    # branches: 2+2=4, 5, 1+1+1=3 -> 5; then 7 (1), then max(skip 0, 8: 3) + 9 (1)
    assert critical_path_ms(g, t) == pytest.approx(1 + 5 + 1 + 3 + 1)


def test_flops_of_resnet_stem_and_dense():
    conv = {"kernel": "(7, 7)", "stride": "(2, 2)", "num_filter": "64"}
    assert op_flops_per_sample("Convolution", conv, [(3, 224, 224)], (64, 112, 112)) == pytest.approx(
        2 * 64 * 112 * 112 * 3 * 49)
    dw = {"kernel": "(3, 3)", "num_group": "32", "num_filter": "32"}
    assert op_flops_per_sample("Convolution", dw, [(32, 112, 112)], (32, 112, 112)) == pytest.approx(
        2 * 32 * 112 * 112 * 9)
    assert op_class("Convolution", dw, [(32, 112, 112)]) == "Convolution/3x3/dw"
    assert op_flops_per_sample("FullyConnected", {"num_hidden": "1000"}, [(2048,)], (1000,)) == 2 * 2048 * 1000


def test_key_ignores_weights_but_not_shape():
    a = op_key("Convolution", {"kernel": "(3, 3)", "num_filter": "64", "name": "x"}, [(64, 56, 56), (64, 64, 3, 3)])
    b = op_key("Convolution", {"kernel": "(3, 3)", "num_filter": "64", "name": "y"}, [(64, 56, 56), (64, 64, 3, 3)])
    c = op_key("Convolution", {"kernel": "(3, 3)", "num_filter": "64"}, [(64, 28, 28)])
    assert a == b != c


def test_from_symbol_json_drops_variables_and_links_ops():
    nodes = [{"op": "null", "name": "data", "inputs": []},
             {"op": "null", "name": "w", "inputs": []},
             {"op": "Convolution", "name": "c", "attrs": {"kernel": "(1, 1)", "num_filter": "4", "no_bias": "True"},
              "inputs": [[0, 0, 0], [1, 0, 0]]},
             {"op": "Activation", "name": "r", "attrs": {"act_type": "relu"}, "inputs": [[2, 0, 0]]},
             {"op": "Pooling", "name": "p", "attrs": {"kernel": "(2, 2)", "pool_type": "max"}, "inputs": [[2, 0, 0]]},
             {"op": "Concat", "name": "cat", "attrs": {"dim": "1"}, "inputs": [[3, 0, 0], [4, 0, 0]]}]
    shapes = {(0, 0): (1, 3, 8, 8), (1, 0): (1, 4, 3, 1, 1), (2, 0): (1, 4, 8, 8), (3, 0): (1, 4, 8, 8),
              (4, 0): (1, 4, 8, 8), (5, 0): (1, 8, 8, 8)}
    g = from_symbol_json("tiny", json.dumps({"nodes": nodes}), shapes)
    assert [n.op for n in g.nodes] == ["Convolution", "Activation", "Pooling", "Concat"]
    assert g.nodes[3].inputs == (1, 2) and g.nodes[1].inputs == (0,) and g.nodes[0].inputs == ()
    assert g.nodes[0].var_inputs == ("", "param")
    assert critical_path_ms(g, [4, 1, 2, 1]) == pytest.approx(4 + 2 + 1)
