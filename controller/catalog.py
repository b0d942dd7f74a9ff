"""Catalog data: model variants, their latency profiles on VM types and function memory sizes,
instance types and prices. Loaded once from the CSVs under configs/catalog; lookups are pure.

Profiles are tables over batch size (VMs) and memory x batch size (functions); between profiled
batch sizes latency is interpolated linearly, between memory sizes log-linearly in both axes.

Every row must be one the hardware can deliver: the loader refuses a row whose implied compute per
vCPU (FLOPs per image x images per second / vCPUs) exceeds its hardware's FP32 ceiling
(controller/compute.py), naming the file, the row and the figure.

A model with no measured function rows may have predicted ones in function_latency_predicted.csv
(same columns; written by `hybridserve profile` from operator profiles, COP:
controller/profiler/predicted_rows.py). They are checked like measured rows, a measured row always
wins, and `function_source[model]` gives the rows' `source`. The catalog predicts nothing itself.
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field

import numpy as np

from controller.compute import (GENERIC_CEILING_GFLOPS_PER_VCPU, CpuSpec, function_row_gflops_per_vcpu,
                                function_vcpus, vm_row_gflops_per_vcpu)
from controller.config import FunctionPlatformConfig
from controller.layer_graph import LayerGraph, load_layer_graph

# Lambda's rule: one vCPU per 1,769 MB (COP predicts by CPU share); one value, the config's default.
MB_PER_VCPU = FunctionPlatformConfig.model_fields["mb_per_vcpu"].default
MAX_FUNCTION_VCPUS = 6.0  # Lambda: at most 6 vCPUs, at 10,240 MB
HARDWARE_COLUMNS = ("clock_ghz", "fp32_lanes", "fma_units", "vcpus_per_core")
PREDICTED_FUNCTION_FILE = "function_latency_predicted.csv"  # optional; rows the profiler predicted


class CatalogError(Exception):
    """Catalog data missing or inconsistent (one line for the operator)."""


@dataclass(frozen=True)
class InstanceType:
    name: str
    vcpu: int
    memory_mb: int
    on_demand_usd_per_h: float
    spot_usd_per_h: float
    boot_s_mean: float
    boot_s_std: float
    cpu: CpuSpec | None = None  # None: the catalog gives no hardware columns (generic ceiling)

    @property
    def ceiling_gflops_per_vcpu(self) -> float:
        return self.cpu.ceiling_gflops_per_vcpu if self.cpu else GENERIC_CEILING_GFLOPS_PER_VCPU

    def price_usd_per_h(self, spot: bool = False) -> float:
        return self.spot_usd_per_h if spot else self.on_demand_usd_per_h


@dataclass(frozen=True)
class ModelVariant:
    name: str
    index: int
    top1_accuracy: float  # fraction
    memory_footprint_mb: int
    cold_start_ms: float  # model load beyond a warm call, without the platform's own init
    source: str = "measured"
    gflops_per_image: float = 0.0  # FP32 work of one forward pass (2 FLOPs per multiply-add)
    weights_mb: float = 0.0        # float32 weights (models.csv `param_mb`)


@dataclass(frozen=True)
class VmProfile:
    """One model on one instance type: per batch size, latency and concurrent batches."""

    batch: np.ndarray
    latency_ms: np.ndarray
    concurrency: np.ndarray

    def latency_at(self, batch: float) -> float:
        return float(np.interp(batch, self.batch, self.latency_ms))

    def concurrency_at(self, batch: float) -> float:
        return float(np.interp(batch, self.batch, self.concurrency))

    def capacity_per_s(self, batch: int) -> float:
        """Requests per second one VM sustains when every slot runs full batches."""
        return self.concurrency_at(batch) * batch * 1000.0 / self.latency_at(batch)

    def max_batch_within(self, latency_ms: float) -> int | None:
        ok = self.batch[self.latency_ms <= latency_ms]
        return int(ok.max()) if ok.size else None


@dataclass(frozen=True)
class FunctionProfile:
    """One model on functions: latency per (memory, batch)."""

    memory_mb: np.ndarray  # sorted sizes with a batch-1 measurement
    latency_b1_ms: np.ndarray
    by_batch: dict = field(default_factory=dict)  # batch -> (memory array, latency array)

    def latency_ms(self, memory_mb: float, batch: int = 1) -> float:
        mem, lat = (self.memory_mb, self.latency_b1_ms) if batch == 1 else self.by_batch[batch]
        if memory_mb < mem[0]:
            return math.inf  # the model does not fit
        x = np.log(np.clip(memory_mb, mem[0], mem[-1]))
        return float(np.exp(np.interp(x, np.log(mem), np.log(lat))))


class Catalog:
    """Read-only view of the catalog folder."""

    def __init__(self, directory: str):
        self.directory = directory
        self.instance_types: dict[str, InstanceType] = {}
        self.models: list[ModelVariant] = []
        self._vm: dict[tuple[str, str], VmProfile] = {}
        self._fn: dict[str, FunctionProfile] = {}
        self._graphs: dict[str, LayerGraph | None] = {}  # read on first use
        self._load()

    # --- loading -----------------------------------------------------------------------------
    def _rows(self, name):
        path = os.path.join(self.directory, name)
        try:
            with open(path, newline="") as fh:
                return list(csv.DictReader(fh))
        except FileNotFoundError:
            raise CatalogError(f"catalog file missing: {path}") from None

    def _load(self):
        for r in self._rows("instance_types.csv"):
            it = InstanceType(r["instance_type"], int(r["vcpu"]), int(r["memory_mb"]),
                              float(r["on_demand_usd_per_h"]), float(r["spot_usd_per_h"]),
                              float(r["boot_s_mean"]), float(r["boot_s_std"]), self._cpu_spec(r))
            self.instance_types[it.name] = it
        self.function_cpu = self._function_cpu()
        model_rows = self._rows("models.csv")
        if model_rows and "gflops_per_image" not in model_rows[0]:
            raise CatalogError(f"{os.path.join(self.directory, 'models.csv')}: no gflops_per_image column "
                               "(each model's FLOPs per image, needed to check its rows against the hardware)")
        for i, r in enumerate(sorted(model_rows, key=lambda r: r["model"])):
            self.models.append(ModelVariant(r["model"], i, float(r["top1_accuracy_pct"]) / 100.0,
                                            int(r["memory_footprint_mb"]), float(r["cold_start_ms"]),
                                            r.get("source", ""), self._positive(r, "gflops_per_image", "models.csv"),
                                            float(r.get("param_mb") or 0.0)))
        self.model_index = {m.name: m.index for m in self.models}
        vm: dict[tuple[str, str], list] = {}
        for line, r in enumerate(self._rows("vm_latency.csv"), start=2):
            self._check_vm_row(line, r)
            vm.setdefault((r["model"], r["instance_type"]), []).append(
                (int(r["batch_size"]), float(r["latency_ms"]), float(r["max_concurrent_batches"])))
        for key, rows in vm.items():
            rows.sort()
            a = np.array(rows, dtype=float)
            self._vm[key] = VmProfile(a[:, 0], a[:, 1], a[:, 2])
        self.function_source: dict[str, str] = {}
        self._load_function_rows("function_latency.csv", measured=True)
        if os.path.isfile(os.path.join(self.directory, PREDICTED_FUNCTION_FILE)):
            self._load_function_rows(PREDICTED_FUNCTION_FILE, measured=False)

    def _load_function_rows(self, file: str, measured: bool) -> None:
        """One file of function rows; a model already profiled by an earlier file keeps that
        profile (measured rows win over predicted ones). Its source: "measured" for measured
        rows, else the rows' own `source` (the profiler writes "predicted (COP)")."""
        fn: dict[str, dict[int, list]] = {}
        source: dict[str, str] = {}
        for line, r in enumerate(self._rows(file), start=2):
            self._check_function_row(line, r, file)
            fn.setdefault(r["model"], {}).setdefault(int(r["batch_size"]), []).append(
                (int(r["memory_mb"]), float(r["latency_ms"])))
            source.setdefault(r["model"], "measured" if measured else r.get("source") or "predicted")
        for model, by_batch in fn.items():
            if model in self._fn:
                continue
            arrays = {}
            for b, rows in by_batch.items():
                rows.sort()
                a = np.array(rows, dtype=float)
                arrays[b] = (a[:, 0], a[:, 1])
            if 1 in arrays:
                self._fn[model] = FunctionProfile(arrays[1][0], arrays[1][1], arrays)
                self.function_source[model] = source[model]

    # --- the hardware check ------------------------------------------------------------------
    @staticmethod
    def _cpu_spec(row: dict) -> CpuSpec | None:
        if not all(row.get(c) not in (None, "") for c in HARDWARE_COLUMNS):
            return None
        return CpuSpec(float(row["clock_ghz"]), int(row["fp32_lanes"]), int(row["fma_units"]),
                       int(row["vcpus_per_core"]))

    def _function_cpu(self) -> CpuSpec | None:
        """The function platform's CPU (`function_platform.csv`, one row), None without the file."""
        if not os.path.isfile(os.path.join(self.directory, "function_platform.csv")):
            return None
        rows = self._rows("function_platform.csv")
        return self._cpu_spec(rows[0]) if rows else None

    @property
    def function_ceiling_gflops_per_vcpu(self) -> float:
        return self.function_cpu.ceiling_gflops_per_vcpu if self.function_cpu else GENERIC_CEILING_GFLOPS_PER_VCPU

    def _positive(self, row: dict, column: str, file: str) -> float:
        try:
            v = float(row.get(column) or "nan")
        except ValueError:
            v = math.nan
        if not v > 0:
            raise CatalogError(f"{os.path.join(self.directory, file)}: model {row.get('model')!r} has "
                               f"{column}={row.get(column)!r}; it must be a positive number")
        return v

    def _over(self, file: str, line: int, what: str, images_per_s: float, need: float, ceiling: float, whose: str):
        return CatalogError(
            f"{os.path.join(self.directory, file)} row {line} ({what}): {images_per_s:,.1f} images/s = "
            f"{need:,.1f} GFLOP/s per vCPU, over {whose} FP32 ceiling of {ceiling:,.1f}: not a catalog the "
            "hardware could deliver (docs/catalog.md)")

    def _gflops(self, model: str) -> float | None:
        if model not in self.model_index:
            return None  # a row of a model the catalog does not list is never used
        return self.models[self.model_index[model]].gflops_per_image

    def _check_vm_row(self, line: int, r: dict) -> None:
        g = self._gflops(r["model"])
        it = self.instance_types.get(r["instance_type"])
        if g is None or it is None:
            return
        b, c, ms = float(r["batch_size"]), float(r["max_concurrent_batches"]), float(r["latency_ms"])
        need = vm_row_gflops_per_vcpu(g, b, c, ms, it.vcpu)
        if need > it.ceiling_gflops_per_vcpu * (1 + 1e-9):
            raise self._over("vm_latency.csv", line, f"{r['model']} on {it.name}, batch {int(b)}, {c:g} concurrent",
                             c * b * 1000.0 / ms, need, it.ceiling_gflops_per_vcpu, f"{it.name}'s")

    def _check_function_row(self, line: int, r: dict, file: str) -> None:
        g = self._gflops(r["model"])
        if g is None:
            return
        b, mem, ms = float(r["batch_size"]), float(r["memory_mb"]), float(r["latency_ms"])
        vcpus = function_vcpus(mem, MB_PER_VCPU, MAX_FUNCTION_VCPUS)
        need = function_row_gflops_per_vcpu(g, b, ms, vcpus)
        ceiling = self.function_ceiling_gflops_per_vcpu
        if need > ceiling * (1 + 1e-9):
            raise self._over(file, line, f"{r['model']} at {int(mem)} MB = {vcpus:.2f} vCPUs, "
                             f"batch {int(b)}", b * 1000.0 / ms, need, ceiling, "the function platform's")

    # --- lookups -----------------------------------------------------------------------------
    def model(self, name: str) -> ModelVariant:
        try:
            return self.models[self.model_index[name]]
        except KeyError:
            raise CatalogError(f"unknown model {name!r}; known: {', '.join(self.model_names)}") from None

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.models]

    def instance_type(self, name: str) -> InstanceType:
        try:
            return self.instance_types[name]
        except KeyError:
            raise CatalogError(f"unknown instance type {name!r}; known: {', '.join(self.instance_types)}") from None

    def vm_profile(self, model: str, instance_type: str) -> VmProfile | None:
        return self._vm.get((model, instance_type))

    def function_profile(self, model: str) -> FunctionProfile | None:
        return self._fn.get(model)

    def layer_graph(self, model: str) -> LayerGraph | None:
        """The model's layer graph for the partition planner (`model_graphs/<model>.csv`), None
        without one. Read once, on first use (few models are ever partitioned), so policies get it
        from the catalog instead of reading files themselves."""
        if model not in self._graphs:
            directory = os.path.join(self.directory, "model_graphs")
            self._graphs[model] = (load_layer_graph(directory, model, self.model(model).cold_start_ms)
                                   if os.path.isfile(os.path.join(directory, f"{model}.csv")) else None)
        return self._graphs[model]

    def models_meeting(self, min_accuracy: float) -> list[ModelVariant]:
        return [m for m in self.models if m.top1_accuracy >= min_accuracy - 1e-12]

    def vm_cost_per_request_usd(self, model: str, instance_type: str, slo_ms: float,
                                spot: bool = False) -> tuple[float, int] | None:
        """Cheapest $ per request on one VM type at full utilization with the largest batch
        whose latency fits the SLO, and that batch; None when no batch fits."""
        prof = self.vm_profile(model, instance_type)
        if prof is None:
            return None
        best = None
        for b in prof.batch:
            if prof.latency_at(b) > slo_ms:
                continue
            per_req = self.instance_type(instance_type).price_usd_per_h(spot) / 3600.0 / prof.capacity_per_s(int(b))
            if best is None or per_req < best[0]:
                best = (per_req, int(b))
        return best


_CACHE: dict[str, Catalog] = {}


def load_catalog(directory: str) -> Catalog:
    """The catalog under `directory`, loaded once per process."""
    key = os.path.abspath(directory)
    if key not in _CACHE:
        _CACHE[key] = Catalog(key)
    return _CACHE[key]
