"""Plain records shared by the VM planner (`vm_planner`) and its reconciler
(`planner_reconcile`): what a plan says to run, per (model, instance type, spot).

Kept apart so both modules import them without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

# (model, instance type, spot): one pool of identical VMs serving one model.
VmKey = tuple[str, str, bool]


def key_str(key: VmKey) -> str:
    """`resnet50|c5.xlarge|od` — a JSON-safe name for a VmKey."""
    model, itype, spot = key
    return f"{model}|{itype}|{'spot' if spot else 'od'}"


def key_from_str(text: str) -> VmKey:
    model, itype, kind = text.split("|")
    return (model, itype, kind == "spot")


@dataclass(frozen=True)
class VmOption:
    """One way to serve a model: an instance type (and market) with its SLO-feasible batch.

    `capacity_per_s` is what one VM sustains with every slot running full batches of
    `batch_size`; `latency_ms` is that batch's execution time (the VM-side service time the
    spill rule uses)."""

    model: str
    instance_type: str
    spot: bool
    batch_size: int
    latency_ms: float
    capacity_per_s: float
    price_usd_per_h: float

    @property
    def key(self) -> VmKey:
        return (self.model, self.instance_type, self.spot)

    @property
    def usd_per_request(self) -> float:
        return self.price_usd_per_h / 3600.0 / self.capacity_per_s


@dataclass(frozen=True)
class MixEntry:
    option: VmOption
    count: int


@dataclass(frozen=True)
class VmMix:
    """The planner's answer: how many VMs of each option to run.

    `capacity_per_s[model]` is the full-utilization rate the mix sustains for the model;
    `usable_capacity_per_s` is that times the target utilization (what the plan covered the
    forecast with). `uncovered_models` had demand but no SLO-feasible VM option: their load
    belongs to functions."""

    entries: tuple[MixEntry, ...]
    cost_usd_per_h: float
    capacity_per_s: Mapping[str, float]
    usable_capacity_per_s: Mapping[str, float]
    uncovered_models: tuple[str, ...] = ()
    status: str = "optimal"  # "optimal" | "empty" | solver message when not optimal
    target_utilization: float = 1.0
    extra: dict = field(default_factory=dict)

    def counts(self) -> dict[VmKey, int]:
        return {e.option.key: e.count for e in self.entries if e.count > 0}

    def batch_size(self, key: VmKey) -> int | None:
        for e in self.entries:
            if e.option.key == key:
                return e.option.batch_size
        return None
