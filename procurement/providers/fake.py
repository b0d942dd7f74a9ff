"""In-memory providers on a virtual clock: the simulator's fleet and the unit tests' cloud.

`FakeVmProvider` keeps VMs with a boot delay drawn (from an injected RNG) from each instance
type's boot-time distribution; a VM becomes `ready` once `now_s` passes its ready time. Hooks
inject faults: capacity errors per instance type, API errors, boots that never finish, VMs that
die. `FakeFunctionProvider` holds function configs and runs `invoke` through a handler callable.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from procurement.providers.base import FunctionRecord, InvokeResult, ProviderError, VmRecord


@dataclass
class FaultHooks:
    """Faults to inject; each set is consumed as it fires unless noted."""

    no_capacity_types: set = field(default_factory=set)  # launches of these types fail (persistent)
    api_errors: int = 0  # the next N launch calls fail with an API error
    never_boot: set = field(default_factory=set)  # request ids whose VM never becomes ready
    boot_delay_scale: float = 1.0  # slow boots


class FakeVmProvider:
    """VMs as records on a virtual clock. Idempotent per request id."""

    def __init__(self, boot_s: Callable[[str], float], faults: FaultHooks | None = None,
                 id_prefix: str = "vm"):
        self._boot_s = boot_s
        self.faults = faults or FaultHooks()
        self._prefix = id_prefix
        self._vms: dict[str, VmRecord] = {}
        self._by_request: dict[str, str] = {}
        self._ready_at: dict[str, float] = {}
        self._errors: list[ProviderError] = []
        self._seq = 0
        self.terminated: list[tuple[VmRecord, float]] = []  # (record, terminated_s) for billing

    @classmethod
    def from_catalog(cls, catalog, rng: np.random.Generator, faults: FaultHooks | None = None):
        """Boot times from the catalog's per-type normal distribution, at least 5 s."""
        def boot_s(instance_type: str) -> float:
            it = catalog.instance_type(instance_type)
            return float(max(5.0, rng.normal(it.boot_s_mean, it.boot_s_std)))
        return cls(boot_s, faults)

    def launch(self, request_id: str, instance_type: str, model: str, now_s: float,
               spot: bool = False, ready_now: bool = False) -> str:
        if request_id in self._by_request:
            return self._by_request[request_id]
        if self.faults.api_errors > 0:
            self.faults.api_errors -= 1
            self._errors.append(ProviderError("api", f"launch {instance_type}: injected API error", request_id))
            return ""
        if instance_type in self.faults.no_capacity_types:
            self._errors.append(ProviderError("capacity", f"InsufficientInstanceCapacity for {instance_type}",
                                              request_id))
            return ""
        self._seq += 1
        vm_id = f"{self._prefix}-{self._seq:06d}"
        boot = 0.0 if ready_now else self._boot_s(instance_type) * self.faults.boot_delay_scale
        ready_at = float("inf") if request_id in self.faults.never_boot else now_s + boot
        self._vms[vm_id] = VmRecord(vm_id, request_id, instance_type, model,
                                    "ready" if ready_at <= now_s else "booting", now_s, None, spot)
        self._ready_at[vm_id] = ready_at
        self._by_request[request_id] = vm_id
        return vm_id

    def ready_at(self, vm_id: str) -> float:
        return self._ready_at[vm_id]

    def terminate(self, vm_id: str, now_s: float) -> None:
        rec = self._vms.pop(vm_id, None)
        if rec is not None:
            self.terminated.append((rec, now_s))

    def kill(self, vm_id: str, now_s: float) -> None:
        """Fault: the VM dies (spot interruption, hardware); reported as an error."""
        if vm_id in self._vms:
            self._errors.append(ProviderError("died", f"{vm_id} died", self._vms[vm_id].request_id))
            self.terminate(vm_id, now_s)

    def list(self, now_s: float) -> list[VmRecord]:
        out = []
        for vm_id, rec in self._vms.items():
            if rec.state == "booting" and self._ready_at[vm_id] <= now_s:
                rec = replace(rec, state="ready", ready_s=self._ready_at[vm_id])
                self._vms[vm_id] = rec
            out.append(rec)
        return out

    def adopt(self, now_s: float) -> list[VmRecord]:
        return self.list(now_s)

    def poll_errors(self) -> list[ProviderError]:
        errs, self._errors = self._errors, []
        return errs


class FakeFunctionProvider:
    """Functions as configs; `invoke` calls `handler(model, payload)` and bills its duration."""

    def __init__(self, handler: Callable[[str, Any], tuple[Any, float]] | None = None,
                 cold_start_ms: float = 0.0, concurrency_limit: int = 1000):
        self._handler = handler or (lambda model, payload: (payload, 1.0))
        self._cold_start_ms = cold_start_ms
        self._functions: dict[str, FunctionRecord] = {}
        self._warm: dict[str, int] = {}
        self._errors: list[ProviderError] = []
        self.throttle_next = 0  # fault hook: the next N invokes are throttled
        self.fail_next = 0  # fault hook: the next N invokes fail

    def deploy(self, model: str, memory_mb: int, warm_pool: int = 0, batch_size: int = 1) -> None:
        if not 128 <= memory_mb <= 10240:
            self._errors.append(ProviderError("api", f"memory {memory_mb} MB out of 128-10240", None, False))
            return
        self._functions[model] = FunctionRecord(model, memory_mb, warm_pool, batch_size)
        self._warm[model] = max(self._warm.get(model, 0), warm_pool)

    def invoke(self, model: str, payload: Any, timeout_s: float) -> InvokeResult:
        if model not in self._functions:
            return InvokeResult(False, None, 0.0, 0.0, False, f"error: no function for {model}")
        if self.throttle_next > 0:
            self.throttle_next -= 1
            return InvokeResult(False, None, 0.0, 0.0, False, "throttled")
        if self.fail_next > 0:
            self.fail_next -= 1
            return InvokeResult(False, None, 1.0, 1.0, False, "error: injected failure")
        cold = self._warm.get(model, 0) == 0
        self._warm[model] = max(1, self._warm.get(model, 0))
        result, duration_ms = self._handler(model, payload)
        duration_ms += self._cold_start_ms if cold else 0.0
        if duration_ms > timeout_s * 1000:
            return InvokeResult(False, None, timeout_s * 1000, timeout_s * 1000, cold, "timeout")
        return InvokeResult(True, result, duration_ms, float(np.ceil(duration_ms)), cold)

    def describe(self) -> list[FunctionRecord]:
        return list(self._functions.values())

    def adopt(self) -> list[FunctionRecord]:
        return self.describe()

    def poll_errors(self) -> list[ProviderError]:
        errs, self._errors = self._errors, []
        return errs
