"""The router's function backend on AWS Lambda: what `serving.router_app.Router` spills to when
the config's provider is aws (built by `serving.function_fleet.build_function_provider`).

It wraps `AwsFunctionProvider` (aws_lambda.py: create/update the functions, with backoff on
throttled control-plane calls; invokes that Lambda throttles are answered "throttled" at once, so
the router serves them at a VM within their SLO) with what the router needs beyond the provider
protocol, the same surface as `LocalFunctionProvider`:

- `invoke(model, batch, timeout_s)` takes the float32 N×C×H×W batch and answers its N×classes
  probabilities: the batch goes to the handler (serving/lambda_handler.py) as base64
  little-endian float32 with its shape and `return_probabilities`, and the reply must carry N
  rows of probabilities, or the call fails ("error: ...") and the router serves the request on a
  VM while its SLO allows. A batch whose event would pass Lambda's 6 MB synchronous payload
  limit fails at once ("error: payload ...") without an invoke.
- the in-flight count is capped at `concurrency_limit` (beyond it: "throttled: ...", as Lambda's
  429; the router then queues the request at the VMs);
- `stats`, `has_idle`, `cold_start_ms`, `reset_peaks`, `reap`: Lambda does not say how many
  execution environments it keeps warm, so they are estimated as Lambda keeps them: an
  environment that answered stays warm until `keep_alive_s` after its last use (the warm pool's
  pings keep `warm_pool` of them beyond that), one environment serves one call at a time, a call
  that finds no idle warm one starts a new one. Cold starts as Lambda reports them (the log's
  "Init Duration" or the handler's `cold` flag), not as estimated.
- `set_faults` / `injected`: the same injected faults as the local provider (tests, soak), applied
  before the call reaches Lambda.

Billing stays with the router (`billed_ms` of each answered call into the one ledger, as for local
functions); `unbilled_ms` in `stats` sums what Lambda billed for calls the router does not bill
(failed calls that ran), so it is visible.

Threads: `invoke` blocks its caller (the router calls it from worker threads); the counters are
guarded by one lock. No clock reads in decisions beyond `clock` (injectable, monotonic).
"""
from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from procurement.providers.base import FunctionRecord, InvokeResult, ProviderError

# Lambda's synchronous invocation payload limit is 6 MB (6,291,456 bytes) for the request; keep
# a margin for the JSON around the tensor.
PAYLOAD_LIMIT_BYTES = 6_291_456 - 16_384


@dataclass
class _Model:
    memory_mb: int
    warm_pool: int = 0
    idle_since_s: list[float] = field(default_factory=list)  # warm environments not in use
    busy: int = 0
    peak_concurrency: int = 0
    invocations: int = 0
    cold_starts: int = 0
    errors: int = 0
    duration_ms_sum: float = 0.0
    cold_ms: float | None = None  # mean duration of the cold invocations so far
    unbilled_ms: float = 0.0


def encode_batch(model: str, batch: np.ndarray) -> dict:
    """The handler's inference event for one batch (serving/lambda_handler.py `decode_inputs`)."""
    x = np.ascontiguousarray(batch, dtype="<f4")
    return {"model": model, "inputs": {"b64": base64.b64encode(x.tobytes()).decode("ascii"),
                                       "shape": list(x.shape)},
            "batch": int(x.shape[0]), "return_probabilities": True}


def decode_probabilities(body: Any, rows: int) -> np.ndarray:
    """The N×classes probabilities of the handler's reply; ValueError naming what is wrong."""
    if not isinstance(body, dict) or "probabilities" not in body:
        keys = sorted(body)[:6] if isinstance(body, dict) else type(body).__name__
        raise ValueError(f"the function's reply has no probabilities (got {keys})")
    probs = np.asarray(body["probabilities"], dtype=np.float32)
    if probs.ndim != 2 or probs.shape[0] != rows:
        raise ValueError(f"the function answered {list(probs.shape)} probabilities for {rows} samples")
    return probs


class AwsRouterFunctions:
    """The router's Lambda backend (see the module docstring)."""

    def __init__(self, lam: Any, keep_alive_s: float = 600.0, concurrency_limit: int = 64,
                 clock: Callable[[], float] = time.monotonic,
                 payload_limit_bytes: int = PAYLOAD_LIMIT_BYTES):
        self.lam = lam  # an AwsFunctionProvider
        self.keep_alive_s, self.concurrency_limit = keep_alive_s, concurrency_limit
        self.payload_limit_bytes = payload_limit_bytes
        self.worker_env: dict[str, str] = {}  # no local workers: nothing to pass them
        self._clock = clock
        self._lock = threading.Lock()
        self._models: dict[str, _Model] = {}
        self._errors: list[ProviderError] = []
        self._closed = False
        self.faults = None
        self._fault_rng = None
        self.injected: dict[str, int] = {"error": 0, "throttle": 0, "timeout": 0}

    @classmethod
    def from_config(cls, provider_cfg: dict, keep_alive_s: float, concurrency_limit: int,
                    functions_cfg: Any = None, **kwargs) -> "AwsRouterFunctions":
        from procurement.providers.aws_lambda import AwsFunctionProvider
        # A throttled request is served at a VM at once: an SLO of a few hundred ms is shorter
        # than any backoff (0.2 s, 0.4 s, ...), so retrying here would only make it late.
        kwargs.setdefault("retry_invoke_throttles", False)
        return cls(AwsFunctionProvider.from_config(provider_cfg, functions_cfg=functions_cfg, **kwargs),
                   keep_alive_s=keep_alive_s, concurrency_limit=concurrency_limit)

    # --- the FunctionProvider protocol --------------------------------------------------------
    def deploy(self, model: str, memory_mb: int, warm_pool: int = 0, batch_size: int = 1) -> None:
        """Create or update the model's Lambda function (memory from the plan); idempotent."""
        self.lam.deploy(model, int(memory_mb), warm_pool=int(warm_pool), batch_size=int(batch_size))
        with self._lock:
            st = self._models.setdefault(model, _Model(int(memory_mb)))
            st.memory_mb, st.warm_pool = int(memory_mb), int(warm_pool)

    def describe(self) -> list[FunctionRecord]:
        return self.lam.describe()

    def adopt(self) -> list[FunctionRecord]:
        return self.lam.adopt()

    def poll_errors(self) -> list[ProviderError]:
        with self._lock:
            mine, self._errors = self._errors, []
        return mine + self.lam.poll_errors()

    def invoke(self, model: str, payload: Any, timeout_s: float) -> InvokeResult:
        """One batch (float32 N×C×H×W) -> its probabilities; any other payload goes as JSON and
        its reply comes back as is."""
        fault = self._injected_fault(model, timeout_s) if self.faults is not None else None
        if fault is not None:
            return fault
        rows = None
        if isinstance(payload, np.ndarray):
            rows = int(payload.shape[0])
            payload = encode_batch(model, payload)
        size = len(json.dumps(payload))
        if size > self.payload_limit_bytes:
            return InvokeResult(False, None, 0.0, 0.0, False,
                                f"error: payload of {size} bytes exceeds Lambda's {self.payload_limit_bytes} byte limit")
        with self._lock:
            if self._closed:
                return InvokeResult(False, None, 0.0, 0.0, False, "throttled: provider closed")
            busy = sum(m.busy for m in self._models.values())
            if busy >= self.concurrency_limit:
                return InvokeResult(False, None, 0.0, 0.0, False,
                                    f"throttled: concurrency limit {self.concurrency_limit} reached")
            st = self._models.setdefault(model, _Model(0))
            # The most recently used environment: Lambda reuses warm ones.
            reused_s = st.idle_since_s.pop() if st.idle_since_s else None
            st.busy += 1
            st.peak_concurrency = max(st.peak_concurrency, st.busy)
        res = self.lam.invoke(model, payload, timeout_s)
        if res.ok and rows is not None:
            try:
                res = InvokeResult(True, decode_probabilities(res.payload, rows), res.duration_ms,
                                   res.billed_ms, res.cold_start)
            except ValueError as e:
                res = InvokeResult(False, res.payload, res.duration_ms, res.billed_ms, res.cold_start, f"error: {e}")
        self._finished(model, st, res, reused_s)
        return res

    def _finished(self, model: str, st: _Model, res: InvokeResult, reused_s: float | None) -> None:
        ran = res.billed_ms > 0  # the call reached an execution environment (Lambda billed it)
        with self._lock:
            st.busy -= 1
            if ran and not (res.error or "").startswith("timeout"):
                st.idle_since_s.append(self._clock())  # it stays warm for the keep-alive
            elif not ran and reused_s is not None:
                st.idle_since_s.append(reused_s)  # never reached it (throttled): still as warm as it was
            if not res.ok:
                if not (res.error or "").startswith("throttled"):
                    st.errors += 1
                    self._errors.append(ProviderError("api", f"function {model}: {res.error}", transient=True))
                st.unbilled_ms += res.billed_ms
                return
            st.invocations += 1
            st.cold_starts += int(res.cold_start)
            st.duration_ms_sum += res.duration_ms
            if res.cold_start:
                st.cold_ms = res.duration_ms if st.cold_ms is None else (
                    st.cold_ms + (res.duration_ms - st.cold_ms) / st.cold_starts)

    # --- what the router reads ----------------------------------------------------------------
    def has_idle(self, model: str) -> bool:
        """Whether a warm environment of `model` is free now (estimated; the next call is warm)."""
        with self._lock:
            st = self._models.get(model)
            return st is not None and bool(st.idle_since_s)

    def cold_start_ms(self, model: str) -> float | None:
        with self._lock:
            st = self._models.get(model)
            return None if st is None else st.cold_ms

    def stats(self) -> dict[str, dict]:
        with self._lock:
            return {m: {"memory_mb": s.memory_mb, "instances": len(s.idle_since_s) + s.busy, "busy": s.busy,
                        "invocations": s.invocations, "cold_starts": s.cold_starts, "errors": s.errors,
                        "peak_concurrency": s.peak_concurrency,
                        "mean_duration_ms": s.duration_ms_sum / s.invocations if s.invocations else 0.0,
                        "cold_start_ms": s.cold_ms, "unbilled_ms": s.unbilled_ms, "backend": "lambda",
                        "function": self._name(m)}
                    for m, s in self._models.items()}

    def _name(self, model: str) -> str:
        name = getattr(self.lam, "function_name", None)  # the Lambda function's name, when it has one
        return name(model) if name else model

    def reset_peaks(self) -> None:
        with self._lock:
            for s in self._models.values():
                s.peak_concurrency = s.busy

    def reap(self, now_s: float | None = None) -> int:
        """Forget environments idle past the keep-alive, beyond the warm pool (Lambda reclaims
        them; the pool's warm-up pings keep the rest). Returns how many were forgotten."""
        now_s = self._clock() if now_s is None else now_s
        gone = 0
        with self._lock:
            for s in self._models.values():
                s.idle_since_s.sort()
                keep = s.idle_since_s[len(s.idle_since_s) - s.warm_pool:] if s.warm_pool else []
                old = s.idle_since_s[:len(s.idle_since_s) - len(keep)]
                fresh = [t for t in old if now_s - t < self.keep_alive_s]
                gone += len(old) - len(fresh)
                s.idle_since_s = sorted(fresh + keep)
        return gone

    def close(self) -> None:
        """Refuse new calls (the functions themselves stay: they cost nothing while idle)."""
        with self._lock:
            self._closed = True

    # --- injected faults (tests, soak): the local provider's, before the call -----------------
    def set_faults(self, faults) -> None:
        with self._lock:
            self.faults = faults
            self._fault_rng = np.random.default_rng(faults.seed) if faults else None

    def _injected_fault(self, model: str, timeout_s: float) -> InvokeResult | None:
        with self._lock:
            f = self.faults
            if f is None:
                return None
            u = float(self._fault_rng.random())
        kind = ("error" if u < f.error_rate else "throttle" if u < f.error_rate + f.throttle_rate else
                "timeout" if u < f.error_rate + f.throttle_rate + f.timeout_rate else None)
        if kind is None:
            return None
        with self._lock:
            self.injected[kind] += 1
        if kind == "throttle":
            return InvokeResult(False, None, 0.0, 0.0, False, "throttled: injected fault")
        if kind == "error":
            return InvokeResult(False, None, 0.0, 0.0, False, "error: injected fault")
        hang_s = min(f.hang_s, timeout_s)
        time.sleep(hang_s)
        return InvokeResult(False, None, hang_s * 1000.0, 0.0, False, "timeout (injected fault)")
