"""Standing VMs: up for the whole run, seen by the policy, billed like any VM, never terminated.

The live system's Ray head keeps one replica of every served variant whatever the policy buys;
it is a VM of some instance type (`serving.head_instance_type`). To plan with it and bill it the
same way, both shells show it to the policy as one ready VM per variant it serves (id
`<vm id>/<model>`, so the policy's per-model reconcile counts it as that model's capacity), bill
it once from its launch, and drop any termination the policy sends it. The simulator starts with
the same VM(s) when `simulator.standing_vms` says so (bench/live_fidelity.py). Pure: no clock.

Its capacity is counted once across its variants: each view carries a `share` (VmView.share),
the part of the VM's time the variant got, in proportion to the work (requests x service time
at batch 1) it brought in the last interval, each variant keeping at least `FLOOR` / k of it so
an idle variant is still served there. E.g. 90 squeezenet requests at 73 ms and 10 resnet18 at
142 ms: work 6570 and 1420 ms, shares 0.025 + 0.95 x 0.822 = 0.806 and 0.025 + 0.95 x 0.178 =
0.194. Both shells reshare at every observation from the same counts, so the policy, the
simulator's VM pool and the live router's routing table see the same split.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

from controller.core import VmView
from controller.ledger import vm_charge_usd

FLOOR = 0.05  # the part of a shared VM split evenly whatever the load (an idle variant is still served)


@dataclass(frozen=True)
class StandingVm:
    vm_id: str
    instance_type: str
    models: tuple[str, ...]
    launched_s: float
    price_usd_per_h: float
    # Per model (aligned with `models`): its share of the VM's capacity; None: an even split.
    shares: tuple[float, ...] | None = None
    # Per model: its service ms at batch 1 on this type (the weight of a request in `reshare`).
    unit_ms: tuple[float, ...] | None = None

    def share_of(self, model: str) -> float:
        if model not in self.models:
            return 0.0
        if self.shares is None:
            return 1.0 / len(self.models)
        return self.shares[self.models.index(model)]

    def reshare(self, requests_by_model: Mapping[str, float]) -> "StandingVm":
        """The same VM with its capacity split by the work each model brought (see the module
        docstring); an interval without requests keeps the current split."""
        if len(self.models) <= 1:
            return self
        unit = self.unit_ms or (1.0,) * len(self.models)
        work = [max(0.0, float(requests_by_model.get(m, 0.0))) * u for m, u in zip(self.models, unit)]
        total = sum(work)
        if total <= 0:
            return self
        k = len(self.models)
        return replace(self, shares=tuple(FLOOR / k + (1.0 - FLOOR) * w / total for w in work))

    def views(self) -> tuple[VmView, ...]:
        return tuple(VmView(f"{self.vm_id}/{m}", f"{self.vm_id}/{m}", self.instance_type, m, "ready",
                            self.launched_s, share=self.share_of(m)) for m in self.models)

    def owns(self, vm_id: str) -> bool:
        return vm_id.startswith(self.vm_id + "/")

    def usd_per_s_per_model(self, model: str | None = None) -> float:
        """Its price times the model's share (the selector's cost of a request there); without a
        model, an even split (how the ledger bills it per model)."""
        share = 1.0 / max(1, len(self.models)) if model is None else self.share_of(model)
        return self.price_usd_per_h / 3600.0 * share

    def charge_usd(self, now_s: float, minimum_s: float) -> float:
        return vm_charge_usd(self.price_usd_per_h, now_s - self.launched_s, minimum_s)


def standing_vm(vm_id: str, instance_type: str, models, catalog, launched_s: float = 0.0) -> StandingVm:
    """One standing VM serving `models` (empty: every catalog model; models the catalog does not
    know are left out: the policy cannot plan them). Raises CatalogError for an unknown type."""
    price = catalog.instance_type(instance_type).price_usd_per_h(False)
    known = list(catalog.model_names)
    served = tuple(m for m in (models or known) if m in known)
    unit = []
    for m in served:
        prof = catalog.vm_profile(m, instance_type)
        unit.append(float(prof.latency_at(1)) if prof is not None else 1.0)
    return StandingVm(vm_id, instance_type, served, float(launched_s), price, unit_ms=tuple(unit))


def is_standing(vms, vm_id: str) -> bool:
    return any(s.owns(vm_id) for s in vms)


def capacity_per_s(sv: StandingVm, model: str, catalog, batch_size: int) -> float:
    """What the standing VM's share drains for `model` at the batch (as VmPool.set_fleet counts it)."""
    prof = catalog.vm_profile(model, sv.instance_type)
    if prof is None:
        return 0.0
    return sv.share_of(model) * float(prof.capacity_per_s(min(max(1, int(batch_size)), int(prof.batch[-1]))))
