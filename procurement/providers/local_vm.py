"""`LocalVmProvider`: VMs of the embedded default as Ray worker nodes on this machine.

A VM is a Ray worker node: after the instance type's emulated boot delay the provider runs
`ray start --address <head> --num-cpus <vCPUs> --resources '{"<vm id>": 1}' --block` as a child
process (what an EC2 VM's user data runs); Serve places replicas on it through that resource.
`terminate` stops that node alone (SIGTERM to its `ray start`).

Lifetime: each VM is a child of this process with PR_SET_PDEATHSIG, forked from one thread that
lives as long as the process (`child_process.popen`), and `ray start --block` fate-shares its raylet the
same way; so a killed daemon leaves no node behind, a new daemon finds none to adopt (and buys
its fleet afresh: no duplicates), while a provider made again inside the same process (a
restarted control loop) `adopt`s the VMs still running.

`VmFaults` injects the faults of the reliability report: a VM that never finishes booting, one
that dies mid-request, slow boots, API errors on launch and terminate.
"""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Callable

from procurement.providers import child_process
from procurement.providers.base import ProviderError, VmRecord
from procurement.providers.fault_spec import parse_fault_spec


@dataclass
class VmFaults:
    """Injected VM faults (tests, the reliability report), drawn per launch from `seed`:
    - `never_boot`: probability a VM never finishes booting: its machine comes up (`ready`, a
      process runs) but its Ray node never joins, as an EC2 VM whose user data failed; the
      control loop gives up on it after its join timeout;
    - `die_after_s`: every VM's Ray node is killed (SIGKILL, its replicas with it) this long
      after it started, with whatever requests are in flight on it (0: never);
    - `slow_boot_s`: added to every VM's boot delay;
    - `api_error`: probability a `launch` or `terminate` call fails as a cloud API error would
      (reported by `poll_errors`, nothing done; the caller retries)."""

    never_boot: float = 0.0
    die_after_s: float = 0.0
    slow_boot_s: float = 0.0
    api_error: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if not (0.0 <= self.never_boot <= 1.0 and 0.0 <= self.api_error <= 1.0):
            raise ValueError(f"never_boot and api_error must be in [0, 1], got {self.never_boot}, {self.api_error}")
        if not (0.0 <= self.die_after_s <= 86400.0 and 0.0 <= self.slow_boot_s <= 3600.0):
            raise ValueError(f"die_after_s must be in [0, 86400] and slow_boot_s in [0, 3600], got "
                             f"{self.die_after_s}, {self.slow_boot_s}")

    @classmethod
    def parse(cls, text: str) -> "VmFaults":
        """"never_boot=0.5,die_after_s=20,slow_boot_s=5,api_error=0.2,seed=1" (HYBRIDSERVE_VM_FAULTS)."""
        names = {f: f for f in ("never_boot", "die_after_s", "slow_boot_s", "api_error", "seed")}
        return cls(**parse_fault_spec(text, names, "VM"))


@dataclass
class _LocalVm:
    record: VmRecord
    vcpu: int
    boot_at_s: float
    head_address: str
    proc: subprocess.Popen | None = None
    started_s: float | None = None
    never_boots: bool = False  # injected: runs a process that never joins the cluster


# Every local VM of this process, by id, whichever provider object launched it: a provider made
# again in the same process (a restarted control loop) adopts them from here. They are children
# of this process (PR_SET_PDEATHSIG), so a new process finds none: its VMs died with the old one.
_RUNNING: dict[str, _LocalVm] = {}
_RUNNING_LOCK = threading.Lock()
_VM_SEQ = itertools.count(1)  # process-wide, so a new provider object never reuses an adopted id


class LocalVmProvider:
    """VMs as Ray worker nodes joined to the head at `head_address` (e.g. "127.0.0.1:6379").

    `boot_s(instance_type)` gives the emulated boot delay; `vcpu_of(instance_type)` the CPUs the
    node declares. Call `list(now_s)` regularly: it starts nodes whose boot delay has passed.
    A VM is `ready` once its `ray start` process runs (Ray reports the node shortly after).
    `join_timeout_s`: a local node joins in seconds, so one not in the cluster this long after it
    started never will; the control loop then gives up on it (terminates it, counts
    `vm_boot_timeout`). Callers: the control loop's tick (launch, list, under its lock) and its
    fleet workers (terminate); a VM's state changes by replacing its record whole.
    """

    def __init__(self, head_address: str, boot_s: Callable[[str], float], vcpu_of: Callable[[str], int],
                 ray_bin: str | None = None, id_prefix: str = "localvm", faults: VmFaults | None = None,
                 join_timeout_s: float = 90.0):
        self.head_address = head_address
        self.join_timeout_s = join_timeout_s
        self._boot_s = boot_s
        self._vcpu_of = vcpu_of
        self._ray_bin = ray_bin or os.path.join(os.path.dirname(sys.executable), "ray")
        self._prefix = id_prefix
        self._vms: dict[str, _LocalVm] = {}
        self._by_request: dict[str, str] = {}
        self._errors: list[ProviderError] = []
        self.injected: dict[str, int] = {"never_boot": 0, "died": 0, "slow_boot": 0, "api_error": 0}
        self.set_faults(faults)

    def set_faults(self, faults: VmFaults | None) -> None:
        """Inject VM faults from the next launch / list / terminate on (None: none)."""
        import numpy as np
        self.faults = faults
        self._fault_rng = np.random.default_rng(faults.seed) if faults else None

    def _api_error(self, what: str, request_id: str | None) -> bool:
        """Whether this call fails with an injected API error (then reported)."""
        if self.faults is None or self.faults.api_error <= 0 or float(self._fault_rng.random()) >= self.faults.api_error:
            return False
        self.injected["api_error"] += 1
        self._errors.append(ProviderError("api", f"{what}: injected API error", request_id, transient=True))
        return True

    def launch(self, request_id: str, instance_type: str, model: str, now_s: float, spot: bool = False) -> str:
        if request_id in self._by_request:
            return self._by_request[request_id]
        if self._api_error(f"launch {instance_type}", request_id):
            return ""
        try:
            vcpu, delay_s = int(self._vcpu_of(instance_type)), float(self._boot_s(instance_type))
        except Exception as e:
            self._errors.append(ProviderError("api", f"launch {instance_type}: {e}", request_id, transient=False))
            return ""
        f = self.faults
        never = bool(f and f.never_boot > 0 and float(self._fault_rng.random()) < f.never_boot)
        if f and f.slow_boot_s > 0:
            delay_s += f.slow_boot_s
            self.injected["slow_boot"] += 1
        self.injected["never_boot"] += int(never)
        vm_id = f"{self._prefix}-{os.getpid()}-{next(_VM_SEQ)}"
        vm = _LocalVm(VmRecord(vm_id, request_id, instance_type, model, "booting", now_s, spot=spot),
                      vcpu, now_s + delay_s, self.head_address, never_boots=never)
        self._vms[vm_id] = vm
        with _RUNNING_LOCK:
            _RUNNING[vm_id] = vm
        self._by_request[request_id] = vm_id
        return vm_id

    def _start(self, vm: _LocalVm, now_s: float) -> None:

        if vm.never_boots:  # the machine is up, its node never joins: a process that just waits
            cmd = [sys.executable, "-c", "import signal; signal.pause()"]
        else:
            cmd = [self._ray_bin, "start", "--address", self.head_address, "--num-cpus", str(vm.vcpu),
                   "--resources", json.dumps({vm.record.vm_id: 1}), "--block", "--disable-usage-stats"]
        try:
            vm.proc = child_process.popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=child_process.die_with_parent, start_new_session=False)
        except OSError as e:
            self._errors.append(ProviderError("boot_failed", f"{vm.record.vm_id}: {e}", vm.record.request_id))
            self._gone(vm, "terminated")
            return
        vm.started_s = now_s
        vm.record = _replace(vm.record, state="ready", ready_s=now_s)

    def terminate(self, vm_id: str, now_s: float, grace_s: float = 60.0) -> None:
        """Stop the VM's Ray node and wait for it (blocks up to `grace_s`, then SIGKILL).

        `ray start --block` stops its own node on SIGTERM: about 1.5 s on this machine when the
        caller drained it first (its Serve replicas gone), up to ~30 s with work still on it.
        An injected API error leaves the VM as it was (reported; the caller terminates again)."""
        vm = self._vms.get(vm_id)
        if vm is None or vm.record.state == "terminated":
            return
        if self._api_error(f"terminate {vm_id}", vm.record.request_id):
            return
        vm.record = _replace(vm.record, state="terminating")
        if vm.proc is not None:
            vm.proc.terminate()
            try:
                vm.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                vm.proc.kill()
                vm.proc.wait()
        self._gone(vm, "terminated")

    def list(self, now_s: float) -> list[VmRecord]:
        for vm in list(self._vms.values()):  # a copy: the control loop's worker may launch meanwhile
            if vm.record.state == "booting" and now_s >= vm.boot_at_s:
                self._start(vm, now_s)
            elif vm.record.state == "ready" and vm.proc is not None:
                die_after_s = self.faults.die_after_s if self.faults else 0.0
                if die_after_s > 0 and vm.proc.poll() is None and now_s - vm.started_s >= die_after_s:
                    vm.proc.kill()  # the node's raylet and replicas go with it (Ray's fate sharing)
                    vm.proc.wait()
                    self.injected["died"] += 1
                if vm.proc.poll() is not None:
                    self._errors.append(ProviderError("died", f"{vm.record.vm_id}: ray node exited "
                                                              f"with {vm.proc.returncode}", vm.record.request_id))
                    self._gone(vm, "terminated")
        return [vm.record for vm in list(self._vms.values()) if vm.record.state != "terminated"]

    def adopt(self, now_s: float) -> list[VmRecord]:
        """At start: the VMs this process already runs on the same head, launched by an earlier
        provider object (a restarted control loop), taken over so that none is launched twice or
        left unmanaged. A new daemon process adopts nothing: its predecessor's VMs were its
        children and died with it (PR_SET_PDEATHSIG), so there is nothing to orphan either."""
        with _RUNNING_LOCK:
            mine = [vm for vm in _RUNNING.values() if vm.head_address == self.head_address
                    and vm.record.vm_id.startswith(f"{self._prefix}-{os.getpid()}-")
                    and vm.record.state != "terminated"]
        for vm in mine:
            self._vms[vm.record.vm_id] = vm
            self._by_request[vm.record.request_id] = vm.record.vm_id
        return self.list(now_s) if mine else []

    def pids(self) -> dict[str, int]:
        """vm id -> pid of the process that is the VM (its `ray start`), for the VMs that run."""
        return {i: vm.proc.pid for i, vm in self._vms.items() if vm.proc is not None and vm.proc.poll() is None}

    def poll_errors(self) -> list[ProviderError]:
        out, self._errors = self._errors, []
        return out

    def close(self, now_s: float) -> None:
        for vm_id in list(self._vms):
            self.terminate(vm_id, now_s)

    def _gone(self, vm: _LocalVm, state: str) -> None:
        vm.record = _replace(vm.record, state=state)
        with _RUNNING_LOCK:
            _RUNNING.pop(vm.record.vm_id, None)


def _replace(record: VmRecord, **changes) -> VmRecord:
    from dataclasses import replace
    return replace(record, **changes)
