"""A model variant as a sequence of gluon blocks, and partitions built from ranges of them.

Every ImageNet variant of the model zoo computes `output(features(x))`, so the children of
`features` followed by `output` are a sequence whose composition is the whole network. Two
rules turn that into the block sequence the planner splits:

1. A `features` child that is a HybridSequential of identical composite units (a ResNet stage
   of bottlenecks) is expanded into those units: a stage is too coarse to split at.
2. A parameter-free child (activation, pooling, dropout, global pooling) joins the block before
   it: splitting just before a ReLU or a pool is never better than just after it (the tensor
   is the same size or larger, and the op costs next to nothing), so those split points are
   dropped rather than offered to the planner.

`build_partition(net, blocks, start, end)` returns a HybridSequential holding the *same* child
objects as `net` (parameters shared, nothing copied), so a chain of partitions computes
exactly what the whole network computes.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BlockRange:
    """One block of the sequence: consecutive children, by their position in the flat list."""

    index: int
    name: str             # child paths joined by "+", e.g. "features.0+features.1"
    children: tuple       # the gluon child blocks, in order


def _has_params(block) -> bool:
    return len(block.collect_params().keys()) > 0


def _is_uniform_stage(block) -> bool:
    """A HybridSequential whose children are all composite units of one type (a ResNet stage)."""
    from mxnet.gluon import nn

    if type(block) is not nn.HybridSequential or len(block) == 0:
        return False
    kinds = {type(c) for c in block}
    only = next(iter(kinds))
    return len(kinds) == 1 and len(list(block[0]._children)) > 0 and only is not nn.HybridSequential


def flat_children(net) -> list[tuple[str, object]]:
    """(path, child) for `features` children (uniform stages expanded), then `output`.

    Paths name children by position ("features.5.2" = unit 2 of features child 5), stable
    across processes, unlike gluon's auto-numbered prefixes."""
    flat = []
    for i, child in enumerate(net.features):
        if _is_uniform_stage(child):
            flat.extend((f"features.{i}.{j}", unit) for j, unit in enumerate(child))
        else:
            flat.append((f"features.{i}", child))
    flat.append(("output", net.output))
    return flat


def block_sequence(net) -> list[BlockRange]:
    """The planner's blocks: parameter-free children merged into the block before them."""
    groups: list[list] = []
    leading: list = []  # parameter-free children before the first block with parameters
    for path, child in flat_children(net):
        if _has_params(child):
            groups.append(leading + [(path, child)])
            leading = []
        elif groups:
            groups[-1].append((path, child))
        else:
            leading.append((path, child))
    if leading:  # a network without any parameters: one block
        groups.append(leading)
    return [BlockRange(i, "+".join(p for p, _ in g), tuple(c for _, c in g)) for i, g in enumerate(groups)]


def build_partition(blocks: list[BlockRange], start: int, end: int, hybridize: bool = True):
    """A HybridSequential of blocks[start:end] sharing the original children (and weights)."""
    from mxnet.gluon import nn

    if not 0 <= start < end <= len(blocks):
        raise ValueError(f"partition [{start}, {end}) out of range for {len(blocks)} blocks")
    seq = nn.HybridSequential(prefix=f"part{start}_{end}_")
    for block in blocks[start:end]:
        for child in block.children:
            seq.add(child)
    if hybridize:
        seq.hybridize(static_alloc=True, static_shape=True)
    return seq


def param_bytes(block: BlockRange) -> int:
    """Bytes of the block's parameters (BatchNorm running statistics included); needs an
    initialised network."""
    import numpy as np

    total = 0
    for child in block.children:
        for p in child.collect_params().values():
            total += int(np.prod(p.shape)) * np.dtype(p.dtype).itemsize
    return total
