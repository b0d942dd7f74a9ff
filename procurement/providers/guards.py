"""Shell-side guards: hard limits on fleet size and spend rate that no plan can cross.

A policy can be wrong (a bug, a bad forecast, a trace it was never tuned for); the shell that
carries its plan out to a real cloud must not follow it past the operator's limits. Every
provider shell (local, aws) passes each plan's launches through `Guard.filter_launches` before
calling `VmProvider.launch`. The guard is pure: it sees the fleet, the prices and the current
function spend rate as arguments, and returns the launches it allows plus one reason per
launch it refuses.

Conservative on purpose:
- every VM not yet `terminated` counts (booting and terminating VMs bill too), and
  terminations in the same plan free nothing until they have happened;
- a launch is priced at `prices(instance_type, spot)`; a provider that may fall back to a
  dearer type on a capacity error (aws) supplies its worst-case price for that launch;
- a price that cannot be found counts as infinite, so unknown types are refused;
- a launch whose request id is already in the fleet (or already allowed in this call) launches
  nothing (providers are idempotent per request id) and is allowed at no cost.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

PriceFn = Callable[[str, bool], float]

_EPS_USD = 1e-9  # float slack when comparing sums of prices against the limit


def _as_price_fn(prices: PriceFn | Mapping[str, float]) -> PriceFn:
    if callable(prices):
        return prices
    # A mapping carries one price per type; using it for spot too overestimates, which is safe.
    return lambda instance_type, spot: prices[instance_type]


def _price_or_inf(price_fn: PriceFn, instance_type: str, spot: bool) -> float:
    try:
        price = float(price_fn(instance_type, spot))
    except Exception:  # unknown type, missing data: refuse rather than guess
        return math.inf
    return price if price >= 0 and not math.isnan(price) else math.inf


@dataclass(frozen=True)
class Guard:
    """Limits the shell enforces whatever a policy says (config: `vms.max_instances`,
    `vms.max_spend_usd_per_h`, the latter covering VMs plus functions)."""

    max_instances: int
    max_spend_usd_per_h: float

    @classmethod
    def from_config(cls, vms_cfg: Any) -> "Guard":
        """From controller.config.VmPlatformConfig (or anything with the two fields)."""
        return cls(int(vms_cfg.max_instances), float(vms_cfg.max_spend_usd_per_h))

    def fleet_spend_usd_per_h(self, fleet: Iterable[Any], prices: PriceFn | Mapping[str, float]) -> float:
        """Spend rate of the VMs that still bill (every state but `terminated`)."""
        price_fn = _as_price_fn(prices)
        return sum(_price_or_inf(price_fn, vm.instance_type, bool(getattr(vm, "spot", False)))
                   for vm in fleet if getattr(vm, "state", "ready") != "terminated")

    def filter_launches(self, launches: Sequence[Any], fleet: Iterable[Any],
                        prices: PriceFn | Mapping[str, float],
                        function_spend_usd_per_h: float = 0.0) -> tuple[list[Any], list[str]]:
        """Split `launches` (objects with request_id, instance_type, spot; e.g. core.LaunchVm)
        into those allowed, in plan order, and one reason string per refused launch.

        Greedy in plan order: a launch is allowed when, added to the fleet and the launches
        allowed before it, neither the instance count nor the spend rate (VMs + functions)
        exceeds its limit. A refused launch does not stop later, cheaper ones.
        """
        price_fn = _as_price_fn(prices)
        live = [vm for vm in fleet if getattr(vm, "state", "ready") != "terminated"]
        known_ids = {vm.request_id for vm in live}
        num_instances = len(live)
        spend_usd_per_h = self.fleet_spend_usd_per_h(live, price_fn) + max(0.0, float(function_spend_usd_per_h))
        allowed: list[Any] = []
        refused: list[str] = []
        for launch in launches:
            if launch.request_id in known_ids:
                allowed.append(launch)  # idempotent re-issue: launches nothing, costs nothing
                continue
            spot = bool(getattr(launch, "spot", False))
            price = _price_or_inf(price_fn, launch.instance_type, spot)
            what = f"{launch.request_id} ({launch.instance_type}{' spot' if spot else ''})"
            if num_instances + 1 > self.max_instances:
                refused.append(f"refused launch {what}: {num_instances + 1} instances would exceed "
                               f"max_instances {self.max_instances}")
            elif math.isinf(price):
                refused.append(f"refused launch {what}: no price known, cannot bound spend")
            elif spend_usd_per_h + price > self.max_spend_usd_per_h + _EPS_USD:
                refused.append(f"refused launch {what}: spend {spend_usd_per_h:.4f} + {price:.4f} USD/h "
                               f"would exceed max_spend_usd_per_h {self.max_spend_usd_per_h}")
            else:
                allowed.append(launch)
                known_ids.add(launch.request_id)
                num_instances += 1
                spend_usd_per_h += price
        return allowed, refused
