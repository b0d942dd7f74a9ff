"""COP's fitted operator model: exact on data of its own form, leave-one-model-out honest (the
held-out model's rows never reach the fit or the model terms), positive and monotone in batch."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from controller.profiler.cop.features import fit_group, op_features
from controller.profiler.cop.fit import (ModelPoint, OpSample, design_row, fit_model_terms, fit_op_model,
                                         regime_of, work_scale)
from controller.profiler.cop.graph import OpGraph, OpNode
from controller.profiler.cop.predictor import OpTable, graph_to_dict, load_graph, predict_latency_ms

CLS = "Convolution/3x3/dense+BatchNorm+Activation"
ADD_CLS = "Convolution/1x1/dense+BatchNorm+elemwise_add+Activation"


def conv_key(cin, hw, cout, k, stride=1, fused="Convolution+BatchNorm+Activation"):
    pad = k // 2
    return (f"{fused}|kernel=({k}, {k});stride=({stride}, {stride});pad=({pad}, {pad});dilate=(1, 1);"
            f"num_filter={cout};num_group=1;no_bias=True|{cin}x{hw}x{hw}")


def conv_flops(cin, hw, cout, k, stride=1):
    out_hw = (hw + 2 * (k // 2) - k) // stride + 1
    return 2.0 * cout * out_hw * out_hw * cin * k * k


def test_features_of_a_conv_key():
    f = op_features(conv_key(64, 56, 128, 3, 2), conv_flops(64, 56, 128, 3, 2))
    assert f["in_elems"] == 64 * 56 * 56 and f["out_elems"] == 128 * 28 * 28
    assert f["weight_elems"] == 128 * 64 * 9 and f["add_elems"] == 0.0
    assert f["flops"] == pytest.approx(2 * f["out_elems"] * 64 * 9)
    fa = op_features(conv_key(64, 56, 256, 1, fused="Convolution+BatchNorm+elemwise_add+Activation"), 1.0)
    assert fa["add_elems"] == fa["out_elems"] == 256 * 56 * 56
    assert fit_group(CLS) == "conv/dense" and fit_group("Convolution/3x3/dw+BatchNorm+Activation") == "conv/dw"


def synthetic_samples(rng, coef, n=60):
    """Rows whose latency is exactly the model's own form with coefficients `coef`."""
    out = []
    for i in range(n):
        cin, cout = int(rng.integers(8, 512)), int(rng.integers(8, 512))
        hw, k = int(rng.integers(6, 60)), int(rng.choice([1, 3]))
        fused = "Convolution+BatchNorm+elemwise_add+Activation" if i % 3 == 0 else "Convolution+BatchNorm+Activation"
        key, flops = conv_key(cin, hw, cout, k, fused=fused), conv_flops(cin, hw, cout, k)
        for b in (1, 4, 16):
            for share in (0.5, 1.0, 2.0):
                work = float(design_row(key, flops, b) @ coef[regime_of(share)])
                ms = work / work_scale(share)
                out.append(OpSample(key, CLS, flops, b, share, ms, frozenset([f"m{i % 4}"])))
    return out


def test_fit_is_exact_on_its_own_form():
    rng = np.random.default_rng(3)
    # dispatch, weights, flops, in, out, add: each share regime its own (share 2: less per FLOP)
    coef = {1.0: np.array([0.02, 2e-7, 1.2e-8, 3e-7, 4e-7, 2e-7]),
            2.0: np.array([0.05, 1e-7, 0.8e-8, 5e-7, 2e-7, 1e-7])}
    samples = synthetic_samples(rng, coef)
    model = fit_op_model(samples)
    for s in samples:
        assert model.predict_ms(s.key, s.op_class, s.flops, s.batch, s.share) == pytest.approx(s.ms, rel=1e-6)
    # an unseen shape is exact too: the form generalises, it does not interpolate
    key, flops = conv_key(300, 20, 40, 3), conv_flops(300, 20, 40, 3)
    for share in (0.5, 1.0, 2.0):
        want = float(design_row(key, flops, 8) @ coef[regime_of(share)]) / work_scale(share)
        assert model.predict_ms(key, CLS, flops, 8, share) == pytest.approx(want, rel=1e-6)
    assert model.trained_on == {"m0", "m1", "m2", "m3"}


def test_model_terms_are_exact_on_their_own_form():
    alpha, per_op, fixed = 0.8, 0.05, 3.0
    pts = []
    for i, (raw, n) in enumerate([(20, 30), (100, 56), (300, 124), (50, 23), (400, 39)]):
        for b in (1, 4):
            for share in (0.5, 1.0):
                r = raw * b / share
                pts.append(ModelPoint(f"m{i}", b, share, r, n, alpha * r + (per_op * n + fixed) / share))
    terms = fit_model_terms(pts, "affine")
    a, p, f = terms.by_key[(1.0, None)]
    assert (a, p, f) == pytest.approx((alpha, per_op, fixed), rel=1e-6)
    assert terms.apply(10.0, 20, 0.25) == pytest.approx(alpha * 10 + (per_op * 20 + fixed) / 0.25, rel=1e-6)


def test_batch_factor_is_the_median_ratio_per_batch():
    # ratio measured / operator sum: 0.7, 0.8, 0.9 at batch 1 (median 0.8), 1.0 at batch 16
    pts = [ModelPoint(m, 1, 1.0, 100.0, 10, r * 100.0) for m, r in zip("abc", (0.7, 0.8, 0.9))]
    pts += [ModelPoint(m, 16, 0.5, 100.0, 10, 100.0) for m in "abc"]
    terms = fit_model_terms(pts, "batch-factor")
    assert terms.apply(50.0, 10, 1.0, batch=1) == pytest.approx(40.0)
    assert terms.apply(50.0, 10, 1.0, batch=16) == pytest.approx(50.0)
    assert terms.apply(50.0, 10, 1.0, batch=2) == pytest.approx(40.0)  # nearest profiled batch
    assert fit_model_terms(pts, "factor").apply(50.0, 10, 1.0, batch=1) == pytest.approx(0.95 * 50.0)


# --- leave one model out, on a hand-made table ---------------------------------------------------------
GRAPHS = {  # "c" alone has the 64->64 1x1 shape; "sweep" rows belong to no model
    "a": OpGraph("a", (OpNode("x", "Convolution+BatchNorm+Activation", conv_key(16, 28, 32, 3), CLS,
                              conv_flops(16, 28, 32, 3)),)),
    "b": OpGraph("b", (OpNode("x", "Convolution+BatchNorm+Activation", conv_key(32, 14, 64, 3), CLS,
                              conv_flops(32, 14, 64, 3)),
                       OpNode("y", "Convolution+BatchNorm+Activation", conv_key(16, 28, 32, 3), CLS,
                              conv_flops(16, 28, 32, 3), (0,)))),
    "c": OpGraph("c", (OpNode("x", "Convolution+BatchNorm+Activation", conv_key(64, 7, 64, 1), CLS,
                              conv_flops(64, 7, 64, 1)),)),
}
SWEEP_KEYS = [(conv_key(c, h, o, k), conv_flops(c, h, o, k)) for c, h, o, k in
              ((8, 40, 16, 3), (128, 10, 256, 1), (48, 20, 24, 3), (256, 7, 128, 1), (24, 56, 8, 1))]
COEF = np.array([0.01, 1e-7, 1e-8, 2e-7, 3e-7, 0.0])


def true_ms(key, flops, b, share):
    return float(design_row(key, flops, b) @ COEF) / min(share, 1.0)


def write_table(d, c_scale=1.0):
    """Op rows (model "c"'s own rows scaled by c_scale) and model rows = 1.2 x the sum + 0.5 ms."""
    keys = {}
    for m, g in GRAPHS.items():
        for n in g.nodes:
            keys.setdefault(n.key, (n.flops_per_sample, []))[1].append(m)
    for k, fl in SWEEP_KEYS:
        keys[k] = (fl, ["sweep"])
    with open(d / "op_latency.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["op_key", "op", "op_class", "flops_per_sample", "batch_size", "cpu_share", "latency_ms",
                    "models"])
        for key, (fl, models) in keys.items():
            for b in (1, 4, 16):
                for s in (0.5, 1.0):
                    scale = c_scale if models == ["c"] else 1.0
                    w.writerow([key, "Convolution", CLS, fl, b, s, scale * true_ms(key, fl, b, s), ";".join(models)])
    with open(d / "model_latency.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "batch_size", "cpu_share", "latency_ms"])
        for m, g in GRAPHS.items():
            for b in (1, 4, 16):
                for s in (0.5, 1.0):
                    total = sum(true_ms(n.key, n.flops_per_sample, b, s) for n in g.nodes)
                    w.writerow([m, b, s, (c_scale if m == "c" else 1.0) * (1.2 * total + 0.5 / s)])
    with open(d / "model_graphs.json", "w") as fh:
        json.dump({m: graph_to_dict(g) for m, g in GRAPHS.items()}, fh)


@pytest.fixture()
def fresh_cache():
    load_graph.cache_clear()
    yield
    load_graph.cache_clear()


def test_leave_one_out_never_uses_the_held_out_rows(tmp_path, fresh_cache):
    write_table(tmp_path)
    t = OpTable(str(tmp_path), "latency_ms", terms="affine")
    samples = t.samples("c")
    assert samples and all(s.models - {"c"} for s in samples)
    assert not any(s.key == GRAPHS["c"].nodes[0].key for s in samples)  # its only shape is c's own
    assert "c" not in t.op_model("c").trained_on and "sweep" in t.op_model("c").trained_on
    assert "c" not in t.model_terms("serial", "c").trained_on
    assert t.model_terms("serial", "c").trained_on == {"a", "b"}
    # a shared shape stays in when one of its models is held out (b still has it) ...
    assert any(s.key == GRAPHS["a"].nodes[0].key for s in t.samples("a"))
    # ... and the form is exact here, so the held-out prediction is right without c's rows
    g = load_graph("c", str(tmp_path))
    want = 1.2 * true_ms(g.nodes[0].key, g.nodes[0].flops_per_sample, 4, 1.0) + 0.5
    assert t.predict_profiled_ms(g, 4, 1.0, exclude="c") == pytest.approx(want, rel=1e-4)


def test_held_out_prediction_ignores_what_was_measured_on_it(tmp_path, fresh_cache):
    write_table(tmp_path)
    before = OpTable(str(tmp_path), "latency_ms")
    g = load_graph("c", str(tmp_path))
    write_table(tmp_path, c_scale=50.0)  # c's operators and c itself measured 50x slower
    after = OpTable(str(tmp_path), "latency_ms")
    for b, s in ((1, 0.5), (16, 1.0)):
        assert after.predict_profiled_ms(g, b, s, exclude="c") == pytest.approx(
            before.predict_profiled_ms(g, b, s, exclude="c"), rel=1e-9)
    # not held out, c's own rows do count (the test above is not vacuous): its row is looked up
    assert "c" in after.op_model().trained_on
    own = OpTable(str(tmp_path), "latency_ms", lookup=True)
    assert own.node_ms(g.nodes[0], 16, 1.0) == pytest.approx(50 * true_ms(g.nodes[0].key, g.nodes[0].flops_per_sample,
                                                                         16, 1.0))
    assert own.node_ms(g.nodes[0], 16, 1.0, exclude="c") == pytest.approx(before.node_ms(g.nodes[0], 16, 1.0, "c"))


MODELS = ("squeezenet", "mobilenet", "resnet18", "resnet50", "inception")


@pytest.mark.parametrize("exclude", [None, "resnet50"])
def test_stored_profile_predictions_positive_and_monotone_in_batch(exclude):
    batches = [1, 2, 3, 4, 8, 12, 16, 24, 32]
    for m in MODELS:
        for share in (0.25, 0.5, 0.8, 1.0, 1.5, 2.0, 3.0):
            ms = [predict_latency_ms(m, b, share, exclude_model=exclude) for b in batches]
            assert all(x > 0 and np.isfinite(x) for x in ms)
            assert all(y >= x - 1e-9 for x, y in zip(ms, ms[1:])), (m, share, ms)
