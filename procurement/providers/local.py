"""The `local` providers: capacity made of real processes on this machine (the embedded default).

`LocalFunctionProvider` (FunctionProvider): a function instance is a worker process
(`serving.function_worker`) that loads its model on first use (a real cold start), serves one
request at a time and is reaped after `keep_alive_s` idle, as a Lambda execution environment.
It gets CPU in proportion to its memory, as Lambda does (1 vCPU per `mb_per_vcpu` MB), through
a cgroup CPU quota and memory limit: cgroup v1 (`cpu.cfs_quota_us`, `memory.limit_in_bytes`)
or v2 (`cpu.max`, `memory.max`). Where neither hierarchy is writable (not root, read-only
/sys/fs/cgroup) the instance runs unconstrained and only `OMP_NUM_THREADS` follows the memory;
`cgroup_mode` says which applies.

`LocalVmProvider` (VmProvider): a VM is a Ray worker node. After the instance type's emulated
boot delay it runs `ray start --address <head> --num-cpus <vCPUs> --resources '{"<vm id>": 1}'
--block` as a child process (what an EC2 VM's user data runs); Serve places replicas on it
through that resource. `terminate` stops that node alone (SIGTERM to its `ray start`).
It lives in procurement/providers/local_vm.py (with `VmFaults`, its fault injection, and
`adopt`), re-exported here.

Both kill their children if this process dies (PR_SET_PDEATHSIG), so nothing is left behind.
"""
from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from procurement.providers import child_process
from procurement.providers.base import FunctionRecord, InvokeResult, ProviderError
from procurement.providers.worker_protocol import read_message, write_message
from procurement.providers.fault_spec import parse_fault_spec

CGROUP_ROOT = "/sys/fs/cgroup"
_CFS_PERIOD_US = 100_000


# --- cgroups -----------------------------------------------------------------------------------
def cgroup_mode(root: str = CGROUP_ROOT) -> str:
    """"v1", "v2" or "none": which hierarchy this process may create limited groups in."""
    if os.path.isdir(os.path.join(root, "cpu")) and os.access(os.path.join(root, "cpu"), os.W_OK):
        return "v1"
    if os.path.isfile(os.path.join(root, "cgroup.controllers")) and os.access(root, os.W_OK):
        return "v2"
    return "none"


@dataclass
class CpuMemLimit:
    """One cgroup (v1: a cpu and a memory group; v2: one group) holding one process."""

    mode: str
    dirs: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, name: str, vcpu: float, memory_mb: int, root: str = CGROUP_ROOT) -> "CpuMemLimit":
        mode = cgroup_mode(root)
        quota_us = max(1000, int(vcpu * _CFS_PERIOD_US))
        mem_bytes = int(memory_mb) * 1024 * 1024
        lim = cls(mode)
        try:
            if mode == "v1":
                cpu = os.path.join(root, "cpu", "hybridserve", name)
                mem = os.path.join(root, "memory", "hybridserve", name)
                os.makedirs(cpu, exist_ok=True)
                lim.dirs.append(cpu)
                _write(cpu, "cpu.cfs_period_us", _CFS_PERIOD_US)
                _write(cpu, "cpu.cfs_quota_us", quota_us)
                if os.access(os.path.join(root, "memory"), os.W_OK):
                    os.makedirs(mem, exist_ok=True)
                    lim.dirs.append(mem)
                    _write(mem, "memory.limit_in_bytes", mem_bytes)
            elif mode == "v2":
                d = os.path.join(root, "hybridserve", name)
                os.makedirs(d, exist_ok=True)
                lim.dirs.append(d)
                _write(d, "cpu.max", f"{quota_us} {_CFS_PERIOD_US}")
                _write(d, "memory.max", mem_bytes)
        except OSError:
            lim.remove()
            return cls("none")
        return lim

    def join(self) -> None:
        """Move the calling process in (called in the child before exec)."""
        for d in self.dirs:
            _write(d, "cgroup.procs", os.getpid())

    def remove(self) -> None:
        for d in self.dirs:
            try:
                os.rmdir(d)
            except OSError:
                pass


def _write(directory: str, name: str, value) -> None:
    with open(os.path.join(directory, name), "w") as fh:
        fh.write(str(value))


# --- functions ---------------------------------------------------------------------------------
@dataclass
class _Instance:
    proc: subprocess.Popen
    limit: CpuMemLimit
    started_s: float
    last_used_s: float
    busy: bool = True
    warm: bool = False  # has loaded its model


@dataclass
class _Function:
    record: FunctionRecord
    runtime: str
    instances: list[_Instance] = field(default_factory=list)
    invocations: int = 0
    cold_starts: int = 0
    errors: int = 0
    duration_ms_sum: float = 0.0
    peak_concurrency: int = 0
    cold_ms: float | None = None  # mean duration of the cold invocations so far


@dataclass
class FunctionFaults:
    """Injected invocation faults (tests, the soak and the reliability report): each invoke fails,
    before reaching an instance, with an error, a throttle (as Lambda's 429) or a timeout (the
    call is held `hang_s`, at most its own timeout), with these probabilities."""

    error_rate: float = 0.0
    throttle_rate: float = 0.0
    timeout_rate: float = 0.0
    hang_s: float = 0.2
    seed: int = 0

    def __post_init__(self):
        rates = (self.error_rate, self.throttle_rate, self.timeout_rate)
        if any(not 0.0 <= r <= 1.0 for r in rates) or sum(rates) > 1.0 + 1e-9:
            raise ValueError(f"fault rates must be in [0, 1] and sum to at most 1, got {rates}")
        if not 0.0 <= self.hang_s <= 600.0:
            raise ValueError(f"hang_s must be in [0, 600], got {self.hang_s}")

    @classmethod
    def parse(cls, text: str) -> "FunctionFaults":
        """"error=0.2,throttle=0.1,timeout=0.1,hang_s=0.5,seed=3" (HYBRIDSERVE_FUNCTION_FAULTS)."""
        names = {"error": "error_rate", "throttle": "throttle_rate", "timeout": "timeout_rate",
                 "hang_s": "hang_s", "seed": "seed"}
        return cls(**parse_fault_spec(text, names, "function"))


class LocalFunctionProvider:
    """Functions as worker processes on this machine. Thread-safe: `invoke` blocks its caller."""

    def __init__(self, keep_alive_s: float = 600.0, mb_per_vcpu: int = 1769, concurrency_limit: int = 8,
                 billing_granularity_ms: int = 1, runtime: str = "mxnet", cgroup_root: str = CGROUP_ROOT,
                 clock: Callable[[], float] = time.monotonic, python: str = sys.executable,
                 worker_env: dict[str, str] | None = None):
        self.keep_alive_s = keep_alive_s
        # Extra environment of every worker (e.g. a partition function's object store and
        # weights directory, serving/function_worker.py), without touching this process's own.
        self.worker_env = dict(worker_env or {})
        self.mb_per_vcpu = mb_per_vcpu
        self.concurrency_limit = concurrency_limit
        self.billing_granularity_ms = billing_granularity_ms
        self.runtime = runtime
        self.cgroup_root = cgroup_root
        self.cgroup_mode = cgroup_mode(cgroup_root)
        self._clock = clock
        self._python = python
        self._lock = threading.Lock()
        self._functions: dict[str, _Function] = {}
        self._errors: list[ProviderError] = []
        self._seq = 0
        self._closed = False
        self.faults: FunctionFaults | None = None
        self._fault_rng = None
        self.injected: dict[str, int] = {"error": 0, "throttle": 0, "timeout": 0}

    def set_faults(self, faults: FunctionFaults | None) -> None:
        """Inject invocation faults from now on (None: none)."""
        import numpy as np
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
            if kind != "throttle":
                fn = self._functions.get(model)
                if fn is not None:
                    fn.errors += 1
        if kind == "throttle":
            return InvokeResult(False, None, 0.0, 0.0, False, "throttled: injected fault")
        if kind == "error":
            return InvokeResult(False, None, 0.0, 0.0, False, "error: injected fault")
        hang_s = min(f.hang_s, timeout_s)
        time.sleep(hang_s)
        return InvokeResult(False, None, hang_s * 1000.0, self._billed_ms(hang_s * 1000.0), False,
                            "timeout (injected fault)")

    # --- FunctionProvider ----------------------------------------------------------------------
    def deploy(self, model: str, memory_mb: int, warm_pool: int = 0, batch_size: int = 1) -> None:
        with self._lock:
            fn = self._functions.get(model)
            rec = FunctionRecord(model, int(memory_mb), int(warm_pool), int(batch_size))
            if fn is None:
                self._functions[model] = _Function(rec, self.runtime)
            else:
                fn.record = rec  # running instances keep their limits; new ones get the new memory

    def describe(self) -> list[FunctionRecord]:
        with self._lock:
            return [f.record for f in self._functions.values()]

    def poll_errors(self) -> list[ProviderError]:
        with self._lock:
            out, self._errors = self._errors, []
        return out

    def invoke(self, model: str, payload: Any, timeout_s: float) -> InvokeResult:
        """Run one batch (float32 N×C×H×W) on an idle instance, starting one if none is idle."""
        if self.faults is not None:
            fault = self._injected_fault(model, timeout_s)
            if fault is not None:
                return fault
        self.reap()
        t0 = self._clock()
        try:
            inst, cold = self._acquire(model)
        except _Throttled as e:
            return InvokeResult(False, None, 0.0, 0.0, False, f"throttled: {e}")
        fn = self._functions[model]
        try:
            write_message(inst.proc.stdin, payload)
            ready, _, _ = select.select([inst.proc.stdout], [], [], timeout_s)
            reply = read_message(inst.proc.stdout) if ready else None
        except (OSError, ValueError) as e:
            reply, why = None, f"error: instance died ({e})"
        else:
            why = "timeout" if not ready else "error: instance died"
        duration_ms = (self._clock() - t0) * 1000.0
        if reply is None:
            self._kill(fn, inst)
            with self._lock:
                fn.errors += 1
                self._errors.append(ProviderError("api", f"function {model}: {why}", transient=True))
            return InvokeResult(False, None, duration_ms, self._billed_ms(duration_ms), cold, why)
        with self._lock:
            inst.busy, inst.warm, inst.last_used_s = False, True, self._clock()
            fn.invocations += 1
            fn.cold_starts += int(cold)
            fn.duration_ms_sum += duration_ms
            if cold:
                fn.cold_ms = duration_ms if fn.cold_ms is None else (
                    fn.cold_ms + (duration_ms - fn.cold_ms) / fn.cold_starts)
        if reply[0] != "ok":
            return InvokeResult(False, None, duration_ms, self._billed_ms(duration_ms), cold, f"error: {reply[1]}")
        return InvokeResult(True, reply[1], duration_ms, self._billed_ms(duration_ms), cold)

    # --- pool mechanics ------------------------------------------------------------------------
    def _acquire(self, model: str) -> tuple[_Instance, bool]:
        with self._lock:
            if self._closed:
                raise _Throttled("provider closed")
            fn = self._functions.get(model)
            if fn is None:
                raise _Throttled(f"no function deployed for {model!r}")
            for inst in fn.instances:
                if not inst.busy and inst.proc.poll() is None:
                    inst.busy = True
                    return inst, not inst.warm
            running = sum(len(f.instances) for f in self._functions.values())
            if running >= self.concurrency_limit:
                raise _Throttled(f"concurrency limit {self.concurrency_limit} reached")
            self._seq += 1
            name = f"fn-{os.getpid()}-{self._seq}"
            memory_mb = fn.record.memory_mb
        vcpu = memory_mb / self.mb_per_vcpu
        limit = CpuMemLimit.create(name, vcpu, memory_mb, self.cgroup_root)
        env = dict(os.environ, **self.worker_env, OMP_NUM_THREADS=str(max(1, round(vcpu))),
                   MXNET_CPU_WORKER_NTHREADS="1")

        def preexec():
            child_process.die_with_parent()
            try:
                limit.join()
            except OSError:
                pass
        # Forked from the process-lifetime thread: a worker started from a short-lived thread
        # (a prewarm, asyncio.to_thread) would otherwise die with that thread.
        proc = child_process.popen([self._python, "-m", "serving.function_worker", model, fn.runtime],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, preexec_fn=preexec)
        now = self._clock()
        inst = _Instance(proc, limit, now, now)
        with self._lock:
            fn.instances.append(inst)
            busy = sum(1 for i in fn.instances if i.busy)
            fn.peak_concurrency = max(fn.peak_concurrency, busy)
        return inst, True

    def _kill(self, fn: _Function, inst: _Instance) -> None:
        with self._lock:
            if inst in fn.instances:
                fn.instances.remove(inst)
        _stop(inst.proc, grace_s=1.0)
        inst.limit.remove()

    def reap(self, now_s: float | None = None) -> int:
        """Stop instances idle longer than the keep-alive (beyond the warm pool); return how many."""
        now_s = self._clock() if now_s is None else now_s
        victims = []
        with self._lock:
            for fn in self._functions.values():
                idle = [i for i in fn.instances if not i.busy]
                idle.sort(key=lambda i: i.last_used_s)
                keep = fn.record.warm_pool
                for inst in idle[:max(0, len(idle) - keep)]:
                    if now_s - inst.last_used_s >= self.keep_alive_s or inst.proc.poll() is not None:
                        victims.append((fn, inst))
        for fn, inst in victims:
            self._kill(fn, inst)
        return len(victims)

    def has_idle(self, model: str) -> bool:
        """Whether a warm instance of `model` is free right now (the next invoke is warm)."""
        with self._lock:
            fn = self._functions.get(model)
            return fn is not None and any(not i.busy and i.warm and i.proc.poll() is None for i in fn.instances)

    def cold_start_ms(self, model: str) -> float | None:
        """Mean duration of `model`'s cold invocations so far (None before the first)."""
        with self._lock:
            fn = self._functions.get(model)
            return None if fn is None else fn.cold_ms

    def stats(self) -> dict[str, dict]:
        """Per function: memory, instances (busy / warm), invocations, cold starts, errors."""
        with self._lock:
            return {m: {"memory_mb": f.record.memory_mb, "instances": len(f.instances),
                        "busy": sum(1 for i in f.instances if i.busy), "invocations": f.invocations,
                        "cold_starts": f.cold_starts, "errors": f.errors, "peak_concurrency": f.peak_concurrency,
                        "mean_duration_ms": f.duration_ms_sum / f.invocations if f.invocations else 0.0,
                        "cold_start_ms": f.cold_ms,
                        "cgroup": self.cgroup_mode}
                    for m, f in self._functions.items()}

    def reset_peaks(self) -> None:
        """Start a new interval for `peak_concurrency` (the control loop reads it once per tick)."""
        with self._lock:
            for f in self._functions.values():
                f.peak_concurrency = sum(1 for i in f.instances if i.busy)

    def close(self) -> None:
        """Stop every instance (the daemon's shutdown)."""
        with self._lock:
            self._closed = True
            all_instances = [(f, i) for f in self._functions.values() for i in f.instances]
        for fn, inst in all_instances:
            self._kill(fn, inst)

    def _billed_ms(self, duration_ms: float) -> float:
        g = self.billing_granularity_ms
        return float(-(-duration_ms // g) * g)


class _Throttled(Exception):
    pass


def _stop(proc: subprocess.Popen, grace_s: float) -> None:
    if proc.poll() is not None:
        return
    for stream in (proc.stdin,):
        try:
            stream.close()  # EOF: the worker exits on its own
        except OSError:
            pass
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- VMs: procurement/providers/local_vm.py (re-exported: `from ...local import LocalVmProvider`) --
from procurement.providers.local_vm import LocalVmProvider, VmFaults  # noqa: E402,F401
