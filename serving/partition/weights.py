"""Per-partition weight files: each partition function loads only its own blocks' parameters.

A partition's function must hold only its share of the model (that is what lets vgg16's
528 MB of weights run on 1,024 MB functions). The deployer writes one gluon `.params` file per
partition, `<dir>/<variant>-part-<start>-<end>.params` (the function's name), from the whole
network built once (`export_partition_weights`); a function then builds the network's
*uninitialised* structure, which allocates no arrays, and loads its file into the blocks
[start, end) alone (`load_partition`): the other blocks' parameters are never allocated.

The files hold exactly the whole network's values, so a chain of functions computes what the
whole model computes (P1 in docs/partitioning.md). Keys are positional ("0.weight" = the
partition's first child), stable across processes. Files are published atomically and are
deterministic, so two deployers writing the same file at once is harmless.
"""
from __future__ import annotations

import os

from serving.runtimes.cache import atomic_path, cache_dir


def default_weights_dir() -> str:
    """Where deployers on this machine keep partition weights (under the runtimes' cache)."""
    return cache_dir("partitions")


def partition_weights_path(weights_dir: str, variant: str, start: int, end: int) -> str:
    from serving.partition.handler import function_name

    return os.path.join(weights_dir, f"{function_name(variant, start, end)}.params")


def export_partition_weights(variant: str, bounds: list[tuple[int, int]], weights_dir: str,
                             weights_path: str | None = None, overwrite: bool = False) -> list[str]:
    """Write the `.params` file of every partition [start, end) in `bounds` (missing ones only,
    unless `overwrite`); the paths, in order. The whole network is built (from `weights_path`,
    or the runtime's deterministic init) only when a file is missing."""
    from serving.partition.graph import block_sequence, build_partition
    from serving.runtimes import spec_of
    from serving.runtimes.mxnet_runtime import build_net

    paths = [partition_weights_path(weights_dir, variant, s, e) for s, e in bounds]
    todo = [(b, p) for b, p in zip(bounds, paths) if overwrite or not os.path.isfile(p)]
    if not todo:
        return paths
    net, _ = build_net(spec_of(variant), weights_path)
    blocks = block_sequence(net)
    for (start, end), path in todo:
        with atomic_path(path) as tmp:
            build_partition(blocks, start, end, hybridize=False).save_parameters(tmp)
    return paths


def load_partition(variant: str, start: int, end: int, path: str):
    """The partition [start, end) of `variant` with its weights from `path`, hybridized, on the
    CPU; no other block's parameters are allocated. Raises FileNotFoundError without the file."""
    import mxnet as mx

    from serving.partition.graph import block_sequence, build_partition
    from serving.runtimes import spec_of
    from serving.runtimes.mxnet_runtime import build_block

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{variant} [{start}, {end}): partition weights not found: {path}")
    blocks = block_sequence(build_block(spec_of(variant)))
    part = build_partition(blocks, start, end, hybridize=False)
    # Strict: a file for another range or architecture fails here instead of serving garbage.
    part.load_parameters(path, ctx=mx.cpu())
    part.hybridize(static_alloc=True, static_shape=True)
    return part


def loaded_param_bytes(part) -> int:
    """Bytes of the parameters a partition holds (what its function keeps resident)."""
    import numpy as np

    return sum(int(np.prod(p.shape)) * np.dtype(p.dtype).itemsize for p in part.collect_params().values())
