"""The control loop's hand-over to the router of what the policy decides per request: the
policy's selector (the one object the router selects every app request with, its learned state
loaded back into the policy each tick) and the Plan's routing table (serving.routing: per variant
the targets' planned capacities, batch size, spill rule and budget). A mixin of
`controller.live.control_loop.ControlLoop`, kept apart so that file stays one job: the tick.
"""
from __future__ import annotations

import logging

log = logging.getLogger("hybridserve.control")


class PlanToRouter:
    def selector_update(self) -> dict:
        """The policy's selector for the router (it selects every app request with it)."""
        return {"selector": self.policy.selector(), "classes": [c.name for c in self.classes],
                "models": list(self.models)}

    def _sync_selector(self, state: dict | None) -> None:
        """Load the router's learned selector state into the policy's selector object: one
        selector, whose requests the router chooses and whose state the policy holds."""
        load = getattr(self.policy.selector(), "load_state", None)
        if state is None or load is None:
            return
        try:
            load(state)
        except ValueError as e:  # another selector's shape: keep the policy's own, say why
            self._count("selector_sync")
            log.warning("selector state from the router not loaded: %s", e)

    def _routing(self, routes=None) -> dict:
        """The plan's routing table (serving.routing) over the targets serving now: the head with
        its share of its capacity, each procured VM's Serve app whole."""
        from serving.routing import HEAD, routing_table

        if routes is not None:
            self._last_routes = tuple(routes)
        serving: dict[str, dict[str, tuple[str, float]]] = {}
        for sv in self.standing:
            for m in sv.models:
                serving.setdefault(m, {})[HEAD] = (sv.instance_type, sv.share_of(m))
        with self._lock:
            for vm_id, (model, app, _) in self._vm_app.items():
                rec = self._records.get(vm_id)
                if vm_id not in self._releasing and rec is not None:
                    serving.setdefault(model, {})[app] = (rec.instance_type, 1.0)
        # The SLO each variant's budget was planned for: the strictest of the classes that may pick it.
        slo = {}
        for c in self.classes:
            for m in c.variants or ():
                slo[m] = min(slo.get(m, c.slo_ms), c.slo_ms)
        table = routing_table(self._last_routes, serving, self.catalog, self.cfg.simulator.client_timeout_s, slo)
        return {m: r.to_dict() for m, r in table.items()}
