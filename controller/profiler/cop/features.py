"""Shape features of an operator for COP's fitted per-class latency model (controller.profiler.cop.fit).

Everything is read from the operator's `key` (type | work attributes | per-sample input
shapes, see controller.profiler.cop.graph.op_key), so profiled rows, cached graphs and sweep rows are
featurised alike without mxnet. Per sample, in elements (float32 values):

- flops: the graph's FLOPs per sample (multiply-add = 2);
- in_elems / out_elems: the data read and written (a separate pass over memory each; running
  an operator alone also reorders its input and output between mxnet's NCHW and MKLDNN's
  blocked layout, a cost in proportion to them);
- add_elems: the residual tensor a fused conv + add reads (out_elems when the add is fused);
- weight_elems: the parameters, read once per batch whatever its size.

The fitting group splits what runs different kernels: dense and depthwise convolution, dense
layers, pooling, and the memory-only operators (concat, flatten, activation, ...).
"""
from __future__ import annotations

import math

# per-sample features, and those read once per batch (not scaled by the batch size)
PER_SAMPLE = ("flops", "in_elems", "out_elems", "add_elems")
PER_BATCH = ("weight_elems",)


def _prod(xs) -> float:
    return float(math.prod(xs)) if xs else 0.0


def _tuple(v: str | None, default: tuple[int, ...]) -> tuple[int, ...]:
    if not v:
        return default
    return tuple(int(x) for x in v.strip("()[] ").split(",") if x.strip())


def parse_key(key: str) -> tuple[str, dict[str, str], list[tuple[int, ...]]]:
    """(op, work attributes, per-sample data shapes) of an operator key; a bare name (hand-made
    tables in tests) has neither."""
    if key.count("|") < 2:
        return key, {}, []
    op, attrs_s, shapes_s = key.split("|", 2)
    attrs = dict(a.split("=", 1) for a in attrs_s.split(";") if "=" in a)
    shapes = [tuple(int(d) for d in s.split("x") if d) for s in shapes_s.split(",") if s]
    return op, attrs, shapes


def fit_group(op_class: str) -> str:
    """The group whose rows one latency model is fitted on."""
    main = op_class.split("+")[0]
    if main.startswith("Convolution"):
        return "conv/dw" if main.endswith("/dw") else "conv/dense"
    if main.startswith("FullyConnected"):
        return "dense"
    if main.startswith("Pooling"):
        return "pool"
    return "memory"


def _conv_out(hw: tuple[int, ...], kernel, stride, pad, dilate) -> tuple[int, ...]:
    return tuple((h + 2 * p - (d * (k - 1) + 1)) // s + 1 for h, k, s, p, d in zip(hw, kernel, stride, pad, dilate))


def _pool_out(hw, kernel, stride, pad, full: bool) -> tuple[int, ...]:
    rnd = math.ceil if full else math.floor
    return tuple(int(rnd((h + 2 * p - k) / s)) + 1 for h, k, s, p in zip(hw, kernel, stride, pad))


def op_features(key: str, flops_per_sample: float) -> dict[str, float]:
    """The features of one operator by shape (per sample; weight_elems per batch)."""
    op, attrs, shapes = parse_key(key)
    main = op.split("+")[0]
    data = shapes[0] if shapes else ()
    in_elems = _prod(data)
    out_elems, weight_elems = in_elems, 0.0
    if main == "Convolution" and len(data) == 3:
        kernel = _tuple(attrs.get("kernel"), (1, 1))
        n = len(kernel)
        hw = _conv_out(data[1:], kernel, _tuple(attrs.get("stride"), (1,) * n), _tuple(attrs.get("pad"), (0,) * n),
                       _tuple(attrs.get("dilate"), (1,) * n))
        cout, groups = int(attrs.get("num_filter", data[0])), int(attrs.get("num_group", 1))
        out_elems = cout * _prod(hw)
        weight_elems = cout * data[0] / groups * _prod(kernel)
    elif main == "FullyConnected":
        out_elems = float(attrs.get("num_hidden", 1))
        weight_elems = in_elems * out_elems
    elif main == "Pooling" and len(data) == 3:
        if attrs.get("global_pool", "False") in ("True", "1", "true"):
            out_elems = float(data[0])
        else:
            kernel = _tuple(attrs.get("kernel"), (1, 1))
            n = len(kernel)
            hw = _pool_out(data[1:], kernel, _tuple(attrs.get("stride"), (1,) * n), _tuple(attrs.get("pad"), (0,) * n),
                           attrs.get("pooling_convention", "valid") == "full")
            out_elems = data[0] * _prod(hw)
    elif main in ("Concat", "add_n", "elemwise_add", "broadcast_add"):
        in_elems = sum(_prod(s) for s in shapes)
        out_elems = in_elems if main == "Concat" else _prod(data)
    return {"flops": float(flops_per_sample), "in_elems": in_elems, "out_elems": float(out_elems),
            "add_elems": float(out_elems) if "elemwise_add" in op.split("+")[1:] else 0.0,
            "weight_elems": float(weight_elems)}
