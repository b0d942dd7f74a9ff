"""Give a measuring child process the CPU of a function of a given size.

Preferred: a cgroup CPU quota, what Lambda itself uses (a CFS quota in proportion to memory).
cgroup v1 (`cpu.cfs_quota_us` under /sys/fs/cgroup/cpu) or v2 (`cpu.max`), whichever this process
may write. Share 0.25 = 25 ms of CPU per 100 ms period; share 2 = 200 ms, two cores.

Fallback (no writable hierarchy, e.g. not root): the child runs unconstrained with
`max(1, round(share))` threads (OMP_NUM_THREADS, MXNET_CPU_WORKER_NTHREADS, onnxruntime
intra-op threads), and below one vCPU its measured times are multiplied by 1/share: a single
thread given a quarter of a core takes four times as long, to first order. `method` records
which applied, so a profile made one way is never mistaken for the other.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

CGROUP_ROOT = "/sys/fs/cgroup"
CFS_PERIOD_US = 100_000
GROUP = "hybridserve-profile"


def threads_for(cpu_share: float) -> int:
    """Worker threads for a share: one below 1.5 vCPUs, else the whole vCPUs (2 at share 2)."""
    return max(1, int(round(cpu_share)))


def fallback_time_scale(cpu_share: float) -> float:
    """Factor applied to measured times when no quota can be set: 1/share below one vCPU."""
    return 1.0 / cpu_share if cpu_share < 1.0 else 1.0


def cgroup_mode(root: str = CGROUP_ROOT) -> str:
    """"v1", "v2" or "none": which hierarchy this process may create CPU-limited groups in."""
    v1 = os.path.join(root, "cpu")
    if os.path.isfile(os.path.join(v1, "cpu.cfs_quota_us")) and os.access(v1, os.W_OK):
        return "v1"
    if os.path.isfile(os.path.join(root, "cgroup.controllers")) and os.access(root, os.W_OK):
        return "v2"
    return "none"


def _write(directory: str, name: str, value) -> None:
    with open(os.path.join(directory, name), "w") as fh:
        fh.write(str(value))


@dataclass
class CpuLimit:
    """The limit one child runs under. `method` is "cgroup-v1", "cgroup-v2" or "threads"."""

    cpu_share: float
    method: str
    directory: str | None = None
    env: dict = field(default_factory=dict)

    @property
    def time_scale(self) -> float:
        return fallback_time_scale(self.cpu_share) if self.method == "threads" else 1.0

    @classmethod
    def create(cls, name: str, cpu_share: float, prefer: str = "auto", root: str = CGROUP_ROOT) -> "CpuLimit":
        """prefer: "auto" (cgroup when writable, else threads), "cgroup" (raise if impossible)
        or "threads" (the fallback, e.g. to compare the two)."""
        n = str(threads_for(cpu_share))
        env = {"OMP_NUM_THREADS": n, "MXNET_CPU_WORKER_NTHREADS": n, "HYBRIDSERVE_PROFILE_THREADS": n}
        mode = cgroup_mode(root) if prefer in ("auto", "cgroup") else "none"
        if mode == "none":
            if prefer == "cgroup":
                raise ValueError(f"--cpu-limit cgroup: no writable cgroup hierarchy under {root}")
            return cls(cpu_share, "threads", None, env)
        quota_us = max(1000, int(round(cpu_share * CFS_PERIOD_US)))
        d = os.path.join(root, "cpu", GROUP, name) if mode == "v1" else os.path.join(root, GROUP, name)
        try:
            os.makedirs(d, exist_ok=True)
            if mode == "v1":
                _write(d, "cpu.cfs_period_us", CFS_PERIOD_US)
                _write(d, "cpu.cfs_quota_us", quota_us)
            else:
                _write(d, "cpu.max", f"{quota_us} {CFS_PERIOD_US}")
        except OSError as e:
            try:
                os.rmdir(d)
            except OSError:
                pass
            if prefer == "cgroup":
                raise ValueError(f"--cpu-limit cgroup: cannot set a quota in {d}: {e.strerror}") from None
            return cls(cpu_share, "threads", None, env)
        return cls(cpu_share, f"cgroup-{mode}", d, env)

    def join(self) -> None:
        """Move the calling process into the group (a preexec hook, run in the child)."""
        if self.directory:
            _write(self.directory, "cgroup.procs", os.getpid())

    def remove(self) -> None:
        if self.directory:
            try:
                os.rmdir(self.directory)
            except OSError:
                pass  # still has a (dying) member: harmless, the name is unique per run
