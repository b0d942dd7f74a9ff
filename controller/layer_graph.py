"""A model as a sequence of blocks, for the partition planner: the catalog data under
`<catalog>/model_graphs/<model>.csv` and `.json` (written by `python -m controller.profiler.partition_graph`).

The CSV has one row per block (`block`, `param_bytes`, `output_bytes`, `activation_bytes` and the
block's latency `ms_at_<M>` per function memory M of the JSON's `memory_grid_mb`); the JSON the
model's `input_bytes` and `runtime_base_mb`. Reading it is the catalog's job (`Catalog.layer_graph`);
planning with it is procurement/partition_planner.py's.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class LayerGraph:
    """A model as a block sequence with per-block sizes and latency per function memory."""

    model: str
    input_bytes: int
    param_bytes: tuple[int, ...]
    output_bytes: tuple[int, ...]
    activation_bytes: tuple[int, ...]
    memory_grid_mb: tuple[int, ...]
    latency_ms: tuple[tuple[float, ...], ...]  # [block][index in memory_grid_mb]
    runtime_base_mb: float                      # resident runtime (python + mxnet) before weights
    cold_start_ms: float                        # whole model's load time beyond a warm call

    @property
    def num_blocks(self) -> int:
        return len(self.param_bytes)

    def at_speed(self, block_ms: list[float] | tuple[float, ...]) -> "LayerGraph":
        """The same graph with every memory size running block b in block_ms[b] (e.g. the
        full-CPU latency measured on this machine, to predict an in-process run)."""
        return replace(self, latency_ms=tuple(tuple(float(ms) for _ in self.memory_grid_mb) for ms in block_ms))


def load_layer_graph(directory: str, model: str, cold_start_ms: float) -> LayerGraph:
    """Read <directory>/<model>.csv and .json; cold_start_ms comes from models.csv."""
    with open(os.path.join(directory, f"{model}.json")) as fh:
        meta = json.load(fh)
    with open(os.path.join(directory, f"{model}.csv"), newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: int(r["block"]))
    grid = tuple(int(m) for m in meta["memory_grid_mb"])
    return LayerGraph(
        model=model, input_bytes=int(meta["input_bytes"]),
        param_bytes=tuple(int(r["param_bytes"]) for r in rows),
        output_bytes=tuple(int(r["output_bytes"]) for r in rows),
        activation_bytes=tuple(int(r["activation_bytes"]) for r in rows),
        memory_grid_mb=grid,
        latency_ms=tuple(tuple(float(r[f"ms_at_{m}"]) for m in grid) for r in rows),
        runtime_base_mb=float(meta["runtime_base_mb"]), cold_start_ms=float(cold_start_ms))
