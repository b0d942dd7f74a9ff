"""A decision log: one JSON line per control tick, what the policy was shown and what it decided.

Both shells write it (the simulator's engine and the live control loop) when the environment
names a file (`HYBRIDSERVE_DECISION_LOG=/path/log.jsonl`), so a live run and its simulation can be
compared tick by tick: where a live VM is bought later than the simulated one, the first line
that differs says which input moved the decision. Off by default; a line is a few hundred bytes.
"""
from __future__ import annotations

import json
import os

ENV = "HYBRIDSERVE_DECISION_LOG"


def summary(obs, plan, side: str) -> dict:
    """The tick's inputs and decisions, reduced to what explains a plan (no per-second rows)."""
    arrivals = obs.arrivals_per_s.sum(axis=0) if obs.arrivals_per_s.size else [0] * len(obs.models)
    return {
        "side": side, "now_s": round(float(obs.now_s), 3), "interval_s": round(float(obs.interval_s), 3),
        "seconds": int(obs.class_arrivals_per_s.shape[0]),
        "class_arrivals": [int(x) for x in obs.class_arrivals_per_s.sum(axis=0)],
        "model_arrivals": {m: int(a) for m, a in zip(obs.models, arrivals) if a},
        "class_model_counts": None if obs.class_model_counts is None else obs.class_model_counts.tolist(),
        "vms": [[v.vm_id, v.instance_type, v.model, v.state] for v in obs.vms],
        "functions": {m: [f.memory_mb, f.warm_instances, f.invocations, f.cold_starts, round(f.mean_duration_ms, 1)]
                      for m, f in obs.functions.items() if f.invocations or f.warm_instances},
        "backlog": {m: b for m, b in obs.backlog.items() if b},
        "launches": [[x.instance_type, x.model] for x in plan.launches],
        "terminations": [x.vm_id for x in plan.terminations],
        "routes": {r.model: [r.vm_batch_size, r.max_vm_wait_ms, r.spill] for r in plan.routes},
        "function_configs": {f.model: [f.memory_mb, f.warm_pool] for f in plan.functions},
    }


class DecisionLog:
    """Appends `summary` lines to the file `HYBRIDSERVE_DECISION_LOG` names (nothing when unset)."""

    def __init__(self, side: str, path: str | None = None):
        self.side, self.path = side, path if path is not None else os.environ.get(ENV)

    def record(self, obs, plan) -> None:
        if not self.path:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(summary(obs, plan, self.side), default=str) + "\n")
