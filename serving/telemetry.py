"""What the router measured since the control loop last asked: the raw material of an Observation.

The router (one replica) records every request here: its second, its query class (the app; a
request naming a variant has none), the variant, the backend and the outcome. The daemon's
control loop calls `take(now_s)` once per tick (through the router's `collect` method) and gets
plain data (JSON-able lists and dicts): per-second arrivals by class and by model, the
class x model counts, and per model served/dropped/violations/p95. Pure: no clock, no Ray.
"""
from __future__ import annotations

import math
import threading

import numpy as np

# A tick that never comes (the loop stalled) must not grow this without bound.
_MAX_SECONDS = 3600
_MAX_LATENCIES = 20_000


class IntervalStats:
    def __init__(self, classes: list[str], models: list[str], start_s: float):
        self.classes = list(classes)
        self.models = list(models)
        self._ci = {c: i for i, c in enumerate(self.classes)}
        self._mi = {m: i for i, m in enumerate(self.models)}
        # Function calls that answered no request (warm-up pings, calls that failed after running)
        # are billed too; they come from other threads, so they gather apart, under a lock.
        self._charge_lock = threading.Lock()
        self._charged_usd: dict[str, float] = {}
        self._reset(start_s)

    def _reset(self, start_s: float) -> None:
        self.start_s = math.floor(start_s)
        self._class_rows: dict[int, np.ndarray] = {}
        self._model_rows: dict[int, np.ndarray] = {}
        self._class_model = np.zeros((len(self.classes), len(self.models)), np.int64)
        self._outcomes = {m: [0, 0, 0, 0] for m in self.models}  # vm, function, dropped, violations
        self._latencies: dict[str, list[float]] = {m: [] for m in self.models}
        self._fn_usd = {m: 0.0 for m in self.models}

    def arrival(self, now_s: float, app: str | None, model: str | None) -> None:
        """One request arrived (model: the variant it was routed to, None if it never got one)."""
        sec = int(math.floor(now_s) - self.start_s)
        if not 0 <= sec < _MAX_SECONDS:
            return
        ci = self._ci.get(app) if app else None
        mi = self._mi.get(model) if model else None
        if ci is not None:
            self._class_rows.setdefault(sec, np.zeros(len(self.classes), np.int64))[ci] += 1
        if mi is not None:
            self._model_rows.setdefault(sec, np.zeros(len(self.models), np.int64))[mi] += 1
        if ci is not None and mi is not None:
            self._class_model[ci, mi] += 1

    def outcome(self, model: str, backend: str, latency_ms: float | None, slo_met: bool,
                function_usd: float = 0.0) -> None:
        """backend: "vm" | "function" | "dropped" (a server error)."""
        o = self._outcomes.get(model)
        if o is None:
            return
        o[{"vm": 0, "function": 1}.get(backend, 2)] += 1
        if not slo_met:
            o[3] += 1
        lats = self._latencies[model]
        if latency_ms is not None and len(lats) < _MAX_LATENCIES:
            lats.append(float(latency_ms))
        self._fn_usd[model] += function_usd

    def charge_function(self, model: str, usd: float) -> None:
        """Bill a function call that answered no request (thread-safe): the ledger gets it with
        the interval's `function_usd`, as the cloud bills every invocation."""
        if usd > 0 and model in self._mi:
            with self._charge_lock:
                self._charged_usd[model] = self._charged_usd.get(model, 0.0) + usd

    def take(self, now_s: float) -> dict:
        """The interval [start, now) as plain data, then start a new one at `now_s`."""
        n_sec = max(0, min(_MAX_SECONDS, int(math.floor(now_s) - self.start_s)))
        class_rows = np.zeros((n_sec, len(self.classes)), np.int64)
        model_rows = np.zeros((n_sec, len(self.models)), np.int64)
        for sec, row in self._class_rows.items():
            if sec < n_sec:
                class_rows[sec] = row
        for sec, row in self._model_rows.items():
            if sec < n_sec:
                model_rows[sec] = row
        stats = {}
        for m, (vm, fn, dropped, viol) in self._outcomes.items():
            if vm or fn or dropped:
                lats = self._latencies[m]
                stats[m] = {"served_vm": vm, "served_function": fn, "dropped": dropped, "slo_violations": viol,
                            "p95_latency_ms": float(np.percentile(lats, 95)) if lats else 0.0}
        with self._charge_lock:
            charged, self._charged_usd = self._charged_usd, {}
        fn_usd = {m: v + charged.pop(m, 0.0) for m, v in self._fn_usd.items()}
        out = {"start_s": float(self.start_s), "end_s": float(self.start_s + n_sec),
               "class_arrivals": class_rows.tolist(), "model_arrivals": model_rows.tolist(),
               "class_model_counts": self._class_model.tolist(), "stats": stats,
               "function_usd": {m: v for m, v in fn_usd.items() if v}}
        # Requests in the current (unfinished) second stay for the next interval.
        carry_c = self._class_rows.get(n_sec)
        carry_m = self._model_rows.get(n_sec)
        self._reset(self.start_s + n_sec)
        if carry_c is not None:
            self._class_rows[0] = carry_c
        if carry_m is not None:
            self._model_rows[0] = carry_m
        return out
