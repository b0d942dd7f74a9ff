"""Provider protocols: the narrow seam between plans and the capacity that carries them out.

Assumptions every implementation states and every caller respects:
- Calls are asynchronous in effect: `launch` returns at once; the VM shows up in `list()` as
  `booting` and later `ready` (eventual consistency, as EC2's describe-instances).
- `launch` is idempotent per `request_id`: a second call with the same id launches nothing
  and returns the same VM id. This is what makes a restarted controller safe. A launch that
  failed returns "" and its error comes out of `poll_errors()`.
- `adopt` is called once at start: it finds this deployment's VMs (or functions) left by an
  earlier controller, so nothing is orphaned and nothing is launched twice.
- Errors are reported, not raised: `poll_errors()` returns (and clears) what went wrong since
  the last call (capacity, throttling, API errors), so a control loop never dies of them.
- `now_s` is passed in where time matters, so the in-memory fake runs on a virtual clock.

Implementations: `fake` (in memory; unit tests and the simulator), `local` (the embedded
default: Ray worker nodes and worker processes on this machine), `aws` (boto3; EC2 and Lambda).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class VmRecord:
    vm_id: str
    request_id: str
    instance_type: str
    model: str
    state: str  # "booting" | "ready" | "terminating" | "terminated"
    launched_s: float
    ready_s: float | None = None
    spot: bool = False


@dataclass(frozen=True)
class ProviderError:
    kind: str  # "capacity" | "throttled" | "api" | "boot_failed" | "died"
    message: str
    request_id: str | None = None
    transient: bool = True


class VmProvider(Protocol):
    def launch(self, request_id: str, instance_type: str, model: str, now_s: float,
               spot: bool = False) -> str:
        """Start one VM; return its id. Idempotent per request_id."""

    def terminate(self, vm_id: str, now_s: float) -> None:
        """Drain and release one VM. Terminating an unknown or gone VM is a no-op."""

    def list(self, now_s: float) -> list[VmRecord]:
        """Every VM of this deployment that is not terminated."""

    def adopt(self, now_s: float) -> list[VmRecord]:
        """This deployment's existing VMs, taken over at start (tags, not memory)."""

    def poll_errors(self) -> list[ProviderError]:
        """Errors since the last call, oldest first."""


@dataclass(frozen=True)
class FunctionRecord:
    model: str
    memory_mb: int
    warm_pool: int
    batch_size: int = 1


@dataclass(frozen=True)
class InvokeResult:
    ok: bool
    payload: Any
    duration_ms: float
    billed_ms: float
    cold_start: bool
    error: str | None = None  # "throttled" | "timeout" | "error: ..."


class FunctionProvider(Protocol):
    def deploy(self, model: str, memory_mb: int, warm_pool: int = 0, batch_size: int = 1) -> None:
        """Create or update one model's function (memory, warm pool). Idempotent."""

    def invoke(self, model: str, payload: Any, timeout_s: float) -> InvokeResult:
        """Run one request (or one batch) and wait for its result."""

    def describe(self) -> list[FunctionRecord]:
        """The functions of this deployment."""

    def adopt(self) -> list[FunctionRecord]:
        """This deployment's existing functions, taken over at start."""

    def poll_errors(self) -> list[ProviderError]:
        """Errors since the last call, oldest first."""
