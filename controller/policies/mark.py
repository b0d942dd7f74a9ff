"""`mark`: MArk-style procurement (Zhang et al., ATC'19), as published. VMs are bought on a
forecast over the boot horizon, of the variant and instance type with the lowest cost per
request at an SLO-feasible batch (batching as the serving system does); requests the VMs cannot
take within the SLO go to functions at a fixed 3,008 MB.

The forecast is MArk's simplest: the recent peak of 10-s mean rates, extrapolated along the
last five minutes' linear trend to the end of the boot horizon.
"""
from __future__ import annotations

import numpy as np

from controller.core import SetFunctionConfig
from controller.policies.reactive import VmReactive
from procurement.sizing import spill_route


class Mark(VmReactive):
    name = "mark"
    spill = True

    def __init__(self, ctx):
        super().__init__(ctx)  # the variant and type cheapest per request, with batching
        boots = [ctx.catalog.instance_type(s.instance_type).boot_s_mean for s in self.sizing.values()]
        self.horizon_s = max(boots) + self.p.control_interval_s

    def load_estimate(self, demand: np.ndarray, j: int, now_s: float) -> float:
        x = demand[-300:, j]
        if len(x) < 20:
            return float(x.max()) if len(x) else 0.0
        n10 = len(x) // 10
        means = x[-n10 * 10:].reshape(n10, 10).mean(axis=1)
        t = np.arange(n10) * 10.0
        slope = np.polyfit(t, means, 1)[0] if n10 >= 3 else 0.0
        recent_peak = float(means[-3:].max())
        return max(recent_peak, recent_peak + slope * self.horizon_s)

    def functions(self, obs):
        if obs.now_s > 0:
            return ()
        return tuple(SetFunctionConfig(self.ctx.catalog.models[j].name, 3008) for j in self.models)

    def routes(self):
        out = []
        for j in self.models:
            name = self.ctx.catalog.models[j].name
            prof = self.ctx.catalog.function_profile(name)
            out.append(spill_route(name, self.slo[j], self.sizing[j], prof.latency_ms(3008) if prof else 0.0))
        return tuple(out)
