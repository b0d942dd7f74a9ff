"""The live control loop's `Observation`, from what the router measured since the last tick
(`Router.collect`), built exactly as controller/sim/engine.py builds the simulator's: the same
fields, in the live catalog's model order and the loop's class order. The router's own orders
may differ (a variant it serves that the catalog lacks is left out). Pure: no clock, no Ray."""
from __future__ import annotations

import numpy as np

from controller.core import FunctionView, ModelStats, Observation, QueryClass, VmView


def observation_from_router(data: dict, models: tuple[str, ...], classes: tuple[QueryClass, ...],
                            vms: tuple[VmView, ...], interval_s: float) -> Observation:
    mi = {m: i for i, m in enumerate(models)}
    ci = {c.name: i for i, c in enumerate(classes)}
    r_models, r_classes = data["models"], data["classes"]
    m_rows = np.asarray(data["model_arrivals"], np.int64).reshape(-1, len(r_models))
    c_rows = np.asarray(data["class_arrivals"], np.int64).reshape(-1, len(r_classes))
    cm_r = np.asarray(data["class_model_counts"], np.int64).reshape(len(r_classes), len(r_models))
    arrivals = np.zeros((m_rows.shape[0], len(models)), np.int64)
    class_arrivals = np.zeros((c_rows.shape[0], len(classes)), np.int64)
    cm = np.zeros((len(classes), len(models)), np.int64)
    for j, m in enumerate(r_models):
        if m in mi:
            arrivals[:, mi[m]] = m_rows[:, j]
    for k, c in enumerate(r_classes):
        if c in ci:
            class_arrivals[:, ci[c]] = c_rows[:, k]
            for j, m in enumerate(r_models):
                if m in mi:
                    cm[ci[c], mi[m]] = cm_r[k, j]
    functions = {m: FunctionView(m, int(f["memory_mb"]), int(f["warm_instances"]), int(f["peak_concurrency"]),
                                 int(f["invocations"]), int(f["cold_starts"]), float(f["mean_duration_ms"]))
                 for m, f in data["functions"].items() if m in mi}
    stats = {m: ModelStats(s["served_vm"], s["served_function"], s["dropped"], s["slo_violations"],
                           s["p95_latency_ms"]) for m, s in data["stats"].items() if m in mi}
    backlog = {m: float(data["backlog"].get(m, 0)) for m in models}
    # Predictors take whole seconds: the observation's time is the end of the measured rows.
    return Observation(float(data["end_s"]), interval_s, models, arrivals, class_arrivals, vms, functions, backlog,
                       stats, class_model_counts=cm)
