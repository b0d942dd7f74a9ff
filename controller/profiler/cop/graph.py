"""A model as a graph of operators, for INFless's combined operator profiling (COP).

Each node is one operator instance: its type (`Convolution`, `FullyConnected`, ...), a `key`
naming the operator *by shape* (type, attributes that change the work, per-sample input shapes)
so the same key profiled for one model serves every model that contains it, and its FLOPs per
sample (the axis along which an unprofiled shape is interpolated).

Latency along the graph (pure, no mxnet):
- `critical_path_ms`: INFless's rule, the sum along a chain and the maximum over parallel
  branches (the longest path through the DAG), right when branches run side by side;
- `total_ms`: the sum over every node, right when one executor thread runs the operators one
  after another and each already uses every core it is given (mxnet on CPU with
  MXNET_CPU_WORKER_NTHREADS=1, as our function workers run).

`from_gluon(variant)` extracts the graph of a served variant with mxnet (imported lazily).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Mapping, Sequence

# Attributes that change an operator's work; others (names, cudnn flags, layouts) do not.
_WORK_ATTRS = ("kernel", "stride", "pad", "dilate", "num_filter", "num_group", "no_bias", "pool_type",
               "global_pool", "pooling_convention", "act_type", "num_hidden", "dim", "p", "flatten")


@dataclass(frozen=True)
class OpNode:
    name: str
    op: str
    key: str  # the operator by shape: what the op table is indexed by
    op_class: str  # shapes of one class are interpolated against each other by FLOPs
    flops_per_sample: float
    inputs: tuple[int, ...] = ()  # indices of the op nodes this one reads (earlier in the list)
    attrs: Mapping[str, str] = field(default_factory=dict)
    in_shapes: tuple[tuple[int, ...], ...] = ()  # per-sample shapes (batch axis dropped) of every input
    var_inputs: tuple[str, ...] = ()  # for each input: "" for an op output (batched), else "param"
    node_json: str = ""  # the node as mxnet serialises it (fused subgraph included), to rebuild it alone


@dataclass(frozen=True)
class OpGraph:
    """Operator nodes in topological order."""

    model: str
    nodes: tuple[OpNode, ...]

    def keys(self) -> list[str]:
        return [n.key for n in self.nodes]


def critical_path_ms(graph: OpGraph, node_ms: Sequence[float]) -> float:
    """Longest path: the sum along a chain, the maximum over parallel branches.

    finish(n) = node_ms[n] + max(finish(i) for i in inputs(n)); the graph's latency is the
    largest finish time. A fire module (squeeze -> {expand1x1, expand3x3} -> concat) with times
    1, {2, 5}, 1 takes 1 + max(2, 5) + 1 = 7 ms, not 9."""
    finish = [0.0] * len(graph.nodes)
    for i, n in enumerate(graph.nodes):
        finish[i] = float(node_ms[i]) + max((finish[j] for j in n.inputs), default=0.0)
    return max(finish, default=0.0)


def total_ms(graph: OpGraph, node_ms: Sequence[float]) -> float:
    """Sum over every node: operators executed one after another."""
    return float(sum(node_ms))


def _shape_str(shape: Sequence[int]) -> str:
    return "x".join(str(int(d)) for d in shape)


def _tuple_attr(attrs: Mapping[str, str], name: str, default: tuple) -> tuple:
    v = attrs.get(name)
    if not v:
        return default
    return tuple(int(x) for x in v.strip("()[] ").split(",") if x.strip())


def op_flops_per_sample(op: str, attrs: Mapping[str, str], in_shapes: Sequence[Sequence[int]],
                        out_shape: Sequence[int]) -> float:
    """Floating-point work per sample (multiply-add = 2). Shapes exclude the batch axis.

    Convolution: 2 x Cout x Hout x Wout x (Cin / groups) x kh x kw (resnet50's first 7x7
    conv: 2 x 64 x 112 x 112 x 3 x 49 = 236 MFLOPs). FullyConnected: 2 x in x out. Pooling:
    one op per window element per output. Element-wise operators: one per output element."""
    out_elems = 1.0
    for d in out_shape:
        out_elems *= d
    if op == "Convolution":
        kernel = _tuple_attr(attrs, "kernel", (1, 1))
        groups = int(attrs.get("num_group", 1))
        cin = in_shapes[0][0]
        k = 1
        for d in kernel:
            k *= d
        return 2.0 * out_elems * (cin / groups) * k
    if op == "FullyConnected":
        n_in = 1
        for d in in_shapes[0]:
            n_in *= d
        return 2.0 * n_in * out_elems
    if op == "Pooling":
        if attrs.get("global_pool", "False") in ("True", "1", "true"):
            n_in = 1
            for d in in_shapes[0]:
                n_in *= d
            return float(n_in)
        k = 1
        for d in _tuple_attr(attrs, "kernel", (1, 1)):
            k *= d
        return out_elems * k
    if op == "BatchNorm":
        return 2.0 * out_elems
    return out_elems


def op_class(op: str, attrs: Mapping[str, str], in_shapes: Sequence[Sequence[int]]) -> str:
    """The interpolation class: convolutions split by kernel and by depthwise or dense (their
    FLOPs buy very different times), pooling by type; other operators by name."""
    if op == "Convolution":
        kernel = "x".join(map(str, _tuple_attr(attrs, "kernel", (1, 1))))
        groups = int(attrs.get("num_group", 1))
        kind = "dw" if groups > 1 and groups == in_shapes[0][0] else "dense"
        return f"Convolution/{kernel}/{kind}"
    if op == "Pooling":
        glob = attrs.get("global_pool", "False") in ("True", "1", "true")
        return f"Pooling/{attrs.get('pool_type', 'max')}{'/global' if glob else ''}"
    if op == "Activation":
        return f"Activation/{attrs.get('act_type', 'relu')}"
    return op


def op_key(op: str, attrs: Mapping[str, str], in_shapes: Sequence[Sequence[int]]) -> str:
    """`Convolution|kernel=(3, 3);num_filter=64;pad=(1, 1)|64x56x56`: type, work attributes,
    per-sample shape of the data input (weights follow from the attributes)."""
    a = ";".join(f"{k}={attrs[k]}" for k in _WORK_ATTRS if k in attrs)
    data = [_shape_str(s) for s in in_shapes]
    if op.split("+")[0] not in ("elemwise_add", "Concat", "broadcast_add", "add_n"):
        data = data[:1]  # weights, bias and BatchNorm statistics follow from the data shape
    return f"{op}|{a}|{','.join(data)}"


def from_symbol_json(model: str, sym_json: str, shape_of: Mapping[tuple[int, int], tuple[int, ...]]) -> OpGraph:
    """The operator graph of an mxnet symbol, given each (node id, output index)'s full shape
    (batch axis first). Variable nodes (data, weights) are dropped."""
    g = json.loads(sym_json)
    raw = g["nodes"]
    index: dict[int, int] = {}
    nodes: list[OpNode] = []
    for nid, n in enumerate(raw):
        if n["op"] == "null":
            continue
        # A fused node (mxnet's MKLDNN backend: `_sg_mkldnn_conv` = Convolution [+BatchNorm]
        # [+elemwise_add] [+Activation]) is keyed and costed by the operators inside it.
        op, attrs = n["op"], dict(n.get("attrs", n.get("attr", {})) or {})
        if n.get("subgraphs"):
            inner = [x for x in n["subgraphs"][0]["nodes"] if x["op"] != "null"]
            op = "+".join(x["op"] for x in inner)
            attrs = dict(inner[0].get("attrs", {}) or {})
            main = inner[0]["op"]
        else:
            main = op
        in_shapes, var_kind, deps = [], [], []
        for entry in n["inputs"]:
            src, out_idx = entry[0], entry[1]
            in_shapes.append(tuple(shape_of[(src, out_idx)][1:]))
            if raw[src]["op"] == "null" and raw[src]["name"] == "data":
                var_kind.append("")  # the model's input: batched like an operator output
            elif raw[src]["op"] == "null":
                var_kind.append("param")
            else:
                var_kind.append("")
                deps.append(index[src])
        out_shape = tuple(shape_of[(nid, 0)][1:])
        index[nid] = len(nodes)
        cls = op_class(main, attrs, in_shapes)
        nodes.append(OpNode(n["name"], op, op_key(op, attrs, in_shapes),
                            cls if op == main else f"{cls}+{op.split('+', 1)[1]}",
                            op_flops_per_sample(main, attrs, in_shapes, out_shape),
                            tuple(sorted(set(deps))), attrs, tuple(in_shapes), tuple(var_kind), json.dumps(n)))
    return OpGraph(model, tuple(nodes))


def from_gluon(variant: str) -> OpGraph:
    """Extract a served variant's operator graph (builds the gluon network; no weights needed)."""
    import mxnet as mx

    from serving.runtimes import spec_of
    from serving.runtimes.mxnet_runtime import build_block

    spec = spec_of(variant)
    net = build_block(spec)
    net.initialize(ctx=mx.cpu())
    return from_mx_symbol(variant, net(mx.sym.var("data")), tuple(spec.input_shape))


def from_mx_symbol(model: str, sym, input_shape: tuple[int, ...]) -> OpGraph:
    """The operator graph of an mxnet symbol reading `data` of per-sample `input_shape`, as it
    executes (after MKLDNN partitioning where mxnet has it)."""
    import mxnet as mx

    features = mx.runtime.Features()
    if features.is_enabled("MKLDNN"):
        # What actually executes: serving's hybridized graph and a bound executor both run the
        # MKLDNN-partitioned graph, where conv+bn+relu is one operator. Profiling the unfused
        # operators one by one overstates squeezenet by ~80% (each ReLU is a separate pass).
        sym = sym.get_backend_symbol("MKLDNN")
    internals = sym.get_internals()
    _, out_shapes, _ = internals.infer_shape(data=(1,) + tuple(input_shape))
    by_name = dict(zip(internals.list_outputs(), out_shapes))
    raw = json.loads(sym.tojson())["nodes"]
    shape_of: dict[tuple[int, int], tuple[int, ...]] = {}
    for nid, n in enumerate(raw):
        name = n["name"]
        for out_idx, cand in enumerate((name, f"{name}_output", f"{name}_output0")):
            if cand in by_name:
                shape_of[(nid, 0)] = tuple(by_name[cand])
                break
        i = 1
        while f"{name}_output{i}" in by_name:
            shape_of[(nid, i)] = tuple(by_name[f"{name}_output{i}"])
            i += 1
    # Aux states (BatchNorm running statistics) are not internals' outputs: infer separately.
    arg_shapes, _, aux_shapes = sym.infer_shape(data=(1,) + tuple(input_shape))
    var_shapes = dict(zip(sym.list_arguments(), arg_shapes))
    var_shapes.update(zip(sym.list_auxiliary_states(), aux_shapes))
    for nid, n in enumerate(raw):
        if n["op"] == "null" and n["name"] in var_shapes:
            # variables have no batch axis of their own; keep one for a uniform [1:] slice
            shape_of[(nid, 0)] = (1,) + tuple(var_shapes[n["name"]]) if n["name"] != "data" \
                else tuple(var_shapes[n["name"]])
    return from_symbol_json(model, sym.tojson(), shape_of)
