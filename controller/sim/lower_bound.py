"""`lower-bound`: computed, not simulated.

Every request is charged the cheapest cost per request that any resource in the catalog reaches
within its class's SLO for any model meeting the class's accuracy floor: a VM type at full
utilization with its best SLO-feasible batch (price / 3600 / (concurrency x batch / latency)),
or a warm function at its best memory. No boot delay, billing minimum, queueing or cold start.
No policy that serves every request within its floor can cost less.
"""
from __future__ import annotations

import math

from controller.policies.common import cheapest_function_memory


def cheapest_per_request_usd(ctx, slo_ms: float, min_accuracy: float) -> tuple[float, str]:
    best = (math.inf, "")
    types = ctx.config.vms.instance_types
    for m in ctx.catalog.models_meeting(min_accuracy):
        for t in types:
            r = ctx.catalog.vm_cost_per_request_usd(m.name, t, slo_ms, spot=ctx.config.vms.allow_spot)
            if r and r[0] < best[0]:
                best = (r[0], f"{m.name} on {t} (batch {r[1]})")
        fn = cheapest_function_memory(ctx, m.name, slo_ms)
        if fn and fn[1] < best[0]:
            best = (fn[1], f"{m.name} on a {fn[0]} MB function")
    return best


def lower_bound_usd(ctx, class_requests: list[int]) -> tuple[float, list[str]]:
    """Total $ for `class_requests[c]` requests of each class, and what priced each class."""
    total, how = 0.0, []
    for c, n in zip(ctx.classes, class_requests):
        per_req, what = cheapest_per_request_usd(ctx, c.slo_ms, c.min_accuracy)
        total += n * per_req if n else 0.0
        how.append(f"{c.name}: {what} at ${per_req:.3g}/request")
    return total, how
