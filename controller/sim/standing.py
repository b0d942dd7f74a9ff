"""Standing VMs: up for the whole run, seen by the policy, billed like any VM, never terminated.

The live system's Ray head keeps one replica of every served variant whatever the policy buys;
it is a VM of some instance type (`serving.head_instance_type`). To plan with it and bill it the
same way, both shells show it to the policy as one ready VM per variant it serves (id
`<vm id>/<model>`, so the policy's per-model reconcile counts it as that model's capacity), bill
it once from its launch, and drop any termination the policy sends it. The simulator starts with
the same VM(s) when `simulator.standing_vms` says so (bench/live_fidelity.py). Pure: no clock.
"""
from __future__ import annotations

from dataclasses import dataclass

from controller.core import VmView
from controller.ledger import vm_charge_usd


@dataclass(frozen=True)
class StandingVm:
    vm_id: str
    instance_type: str
    models: tuple[str, ...]
    launched_s: float
    price_usd_per_h: float

    def views(self) -> tuple[VmView, ...]:
        return tuple(VmView(f"{self.vm_id}/{m}", f"{self.vm_id}/{m}", self.instance_type, m, "ready",
                            self.launched_s) for m in self.models)

    def owns(self, vm_id: str) -> bool:
        return vm_id.startswith(self.vm_id + "/")

    def usd_per_s_per_model(self) -> float:
        """Its price shared evenly by the variants it serves (the selector's cost of a request there)."""
        return self.price_usd_per_h / 3600.0 / max(1, len(self.models))

    def charge_usd(self, now_s: float, minimum_s: float) -> float:
        return vm_charge_usd(self.price_usd_per_h, now_s - self.launched_s, minimum_s)


def standing_vm(vm_id: str, instance_type: str, models, catalog, launched_s: float = 0.0) -> StandingVm:
    """One standing VM serving `models` (empty: every catalog model; models the catalog does not
    know are left out: the policy cannot plan them). Raises CatalogError for an unknown type."""
    price = catalog.instance_type(instance_type).price_usd_per_h(False)
    known = list(catalog.model_names)
    served = tuple(m for m in (models or known) if m in known)
    return StandingVm(vm_id, instance_type, served, float(launched_s), price)


def is_standing(vms, vm_id: str) -> bool:
    return any(s.owns(vm_id) for s in vms)
