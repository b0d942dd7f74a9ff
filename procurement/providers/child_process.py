"""Child processes that die with this process: local VMs (Ray worker nodes) and local function
workers.

Each child gets PR_SET_PDEATHSIG (SIGTERM when its parent goes), so a killed daemon leaves no
orphan. That signal fires when the *thread* that forked the child exits, not the process: a
child started from a short-lived thread (a control-loop worker, `asyncio.to_thread`, a prewarm
thread) would be killed when that thread ends. `popen` therefore forks every child from one
thread that lives as long as the process.
"""
from __future__ import annotations

import ctypes
import queue
import signal
import subprocess
import threading
from concurrent.futures import Future

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec hook: the child gets SIGTERM when its parent dies (Linux), so no orphan survives."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


class _Spawner:
    """Runs `subprocess.Popen` on one daemon thread that lives as long as this process."""

    _queue: queue.SimpleQueue | None = None
    _lock = threading.Lock()

    @classmethod
    def popen(cls, cmd: list[str], **kw) -> subprocess.Popen:
        with cls._lock:
            if cls._queue is None:
                cls._queue = queue.SimpleQueue()
                threading.Thread(target=cls._serve, args=(cls._queue,), name="child-spawner", daemon=True).start()
        fut: Future = Future()
        cls._queue.put((cmd, kw, fut))
        return fut.result()

    @staticmethod
    def _serve(q: queue.SimpleQueue) -> None:
        while True:
            cmd, kw, fut = q.get()
            try:
                fut.set_result(subprocess.Popen(cmd, **kw))
            except BaseException as e:  # handed to the caller
                fut.set_exception(e)


def popen(cmd: list[str], **kw) -> subprocess.Popen:
    """`subprocess.Popen(cmd, **kw)` forked from the process-lifetime thread (see the module
    docstring); pair it with `preexec_fn` calling `die_with_parent()`."""
    return _Spawner.popen(cmd, **kw)
