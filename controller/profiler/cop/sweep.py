"""A synthetic sweep of operator shapes for COP, taken from no model.

The operators of five models cover a few shapes per class; an operator shape only the held-out
model has (resnet50's 1x1 bottlenecks fused with the residual add, squeezenet's thin 1x1
squeezes) must then be extrapolated. The sweep measures shapes spread log-uniformly over
channels, spatial size, stride and fused variant (conv + BN + ReLU, conv + BN + add + ReLU, the
conv + BN shortcut, depthwise 3x3), plus dense, pooling and concat, so the per-class fits in
controller.profiler.cop.fit see the shape space rather than five models' corners of it. Being no model's,
its rows serve every leave-one-model-out fold.

    from controller.profiler.cop.sweep import sweep_graphs
    graphs = sweep_graphs(n_blocks=64, seed=0)   # mxnet graphs, MKLDNN-fused like served models
"""
from __future__ import annotations

import numpy as np

from controller.profiler.cop.graph import OpGraph, from_mx_symbol

SWEEP = "sweep"  # the `models` tag of sweep rows: never a held-out model


def _log_int(rng: np.random.Generator, lo: int, hi: int, multiple: int = 1) -> int:
    v = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    return max(multiple, int(round(v / multiple)) * multiple)


def _conv_bn(mx, x, name: str, cout: int, kernel: int, stride: int, groups: int = 1):
    pad = kernel // 2
    c = mx.sym.Convolution(x, kernel=(kernel, kernel), stride=(stride, stride), pad=(pad, pad), num_filter=cout,
                           num_group=groups, no_bias=True, name=f"{name}_conv")
    return mx.sym.BatchNorm(c, fix_gamma=False, name=f"{name}_bn")


KINDS = {"plain1": 0.2, "plain3": 0.2, "res1": 0.16, "res3": 0.16, "dw3": 0.12, "pool": 0.08, "concat": 0.08}


def _block(mx, rng: np.random.Generator, i: int, kinds: tuple[str, ...]):
    """One synthetic block and its per-sample input shape: a block kind drawn at random among
    `kinds` (conv kernel 1 or 3, plain / residual / depthwise; pooling + dense; concat),
    channels 8..1024, spatial 6..120."""
    p = np.array([KINDS[k] for k in kinds])
    kind = rng.choice(list(kinds), p=p / p.sum())
    while True:  # at most ~2 GFLOPs per sample (the models' largest operator: 1.4), so the sweep stays short
        hw = _log_int(rng, 6, 120)
        cin = _log_int(rng, 8, 1024, 8)
        cout = _log_int(rng, 8, 1024, 8)
        stride = int(rng.choice([1, 2], p=[0.75, 0.25])) if hw >= 12 else 1
        if 2.0 * cin * cout * 9 * (hw / stride) ** 2 <= 2e9:
            break
    data = mx.sym.var("data")
    name = f"s{i}"
    if kind in ("plain1", "plain3"):
        out = mx.sym.Activation(_conv_bn(mx, data, name, cout, int(kind[-1]), stride), act_type="relu")
    elif kind in ("res1", "res3"):
        # a residual block's tail: conv + BN + add(shortcut) + ReLU, the shortcut a 1x1 conv + BN
        main = _conv_bn(mx, data, name, cout, int(kind[-1]), stride)
        short = _conv_bn(mx, data, f"{name}_sc", cout, 1, stride)
        out = mx.sym.Activation(main + short, act_type="relu")
    elif kind == "dw3":
        out = mx.sym.Activation(_conv_bn(mx, data, name, cin, 3, stride, groups=cin), act_type="relu")
    elif kind == "pool":
        x = mx.sym.Pooling(data, kernel=(3, 3), stride=(2, 2), pool_type="max", name=f"{name}_max")
        x = mx.sym.Pooling(x, kernel=(3, 3), stride=(1, 1), pad=(1, 1), pool_type="avg", name=f"{name}_avg")
        x = mx.sym.Pooling(x, kernel=(1, 1), global_pool=True, pool_type="avg", name=f"{name}_gap")
        out = mx.sym.FullyConnected(mx.sym.Flatten(x), num_hidden=_log_int(rng, 10, 2000), name=f"{name}_fc")
    else:
        a = mx.sym.Activation(_conv_bn(mx, data, f"{name}a", cout, 1, 1), act_type="relu")
        b = mx.sym.Activation(_conv_bn(mx, data, f"{name}b", cout // 2 or 8, 1, 1), act_type="relu")
        out = mx.sym.Concat(a, b, dim=1)
    return out, (cin, hw, hw)


def sweep_graphs(n_blocks: int = 64, seed: int = 0, kinds: tuple[str, ...] = tuple(KINDS)) -> list[OpGraph]:
    """`n_blocks` synthetic one-block graphs (model name "sweep") as they execute here, each of a
    kind in `kinds` (all by default)."""
    import mxnet as mx

    rng = np.random.default_rng(seed)
    graphs = []
    for i in range(n_blocks):
        sym, shape = _block(mx, rng, i, tuple(kinds))
        g = from_mx_symbol(SWEEP, sym, shape)
        graphs.append(g)
    return graphs
