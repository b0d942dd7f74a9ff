"""The pure control core: what a policy sees (`Observation`), what it decides (`Plan`), the
policy protocol and the registry of policies by name.

A policy never reads a clock, a global RNG, Ray, boto3 or a socket. The shell (simulator or
daemon) reads its clock once per tick, builds an Observation, calls
`policy.decide(obs, state, rng) -> (plan, state)` and carries the plan out. `Plan.next_tick_s`
says when the policy wants to run again.

Each policy also owns a *selector*: the router's hot-path choice of model variant per request
(`select`) and what it learns from outcomes (`observe`); see selector/.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol

import numpy as np


# --- decisions ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class LaunchVm:
    """Buy one VM of `instance_type` to serve `model`. Idempotent per `request_id`."""

    request_id: str
    instance_type: str
    model: str
    spot: bool = False


@dataclass(frozen=True)
class TerminateVm:
    vm_id: str


@dataclass(frozen=True)
class SetFunctionConfig:
    """Memory (CPU follows), warm instances and batching of one model's function.

    Several records for one model in a plan form an INFless non-uniform set: each takes the
    band [rate_lo_per_s, rate_hi_per_s) of the model's spill rate, filled from the bottom.

    With `partition_plan` (a `procurement.partition_planner.PartitionPlan`, planned warm), the
    model is served as that chain of functions (AMPS-Inf, issue 13), one per partition at its
    own memory; `memory_mb` is then the largest of them and batching does not apply.
    """

    model: str
    memory_mb: int
    warm_pool: int = 0
    batch_size: int = 1
    wait_ms: float = 0.0
    rate_lo_per_s: float = 0.0
    rate_hi_per_s: float = float("inf")
    partition_plan: Any = None


@dataclass(frozen=True)
class Route:
    """How the router sends one model's requests.

    A request goes to the model's VM pool when its expected wait there is at most
    `max_vm_wait_ms` (None: always, queueing up to the client timeout); otherwise it spills to
    the function when `spill` is set, or is rejected when not.
    """

    model: str
    vm_batch_size: int = 1
    max_vm_wait_ms: float | None = None
    spill: bool = True


@dataclass(frozen=True)
class Plan:
    launches: tuple[LaunchVm, ...] = ()
    terminations: tuple[TerminateVm, ...] = ()
    functions: tuple[SetFunctionConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    next_tick_s: float = 10.0


# --- observations ------------------------------------------------------------------------------
@dataclass(frozen=True)
class VmView:
    vm_id: str
    request_id: str
    instance_type: str
    model: str
    state: str  # "booting" | "ready"
    launched_s: float
    spot: bool = False
    # The fraction of this VM's capacity that serves `model`: 1 for a procured VM; below 1 for a
    # standing VM shared by several variants (the live head, controller/standing.py), so
    # its capacity is counted once across them.
    share: float = 1.0


@dataclass(frozen=True)
class FunctionView:
    model: str
    memory_mb: int
    warm_instances: int
    peak_concurrency: int  # over the last interval
    invocations: int
    cold_starts: int
    mean_duration_ms: float


@dataclass(frozen=True)
class ModelStats:
    """Outcomes of one model's requests over the last interval."""

    served_vm: int = 0
    served_function: int = 0
    dropped: int = 0
    slo_violations: int = 0
    p95_latency_ms: float = 0.0


@dataclass(frozen=True)
class Observation:
    now_s: float
    interval_s: float
    models: tuple[str, ...]
    arrivals_per_s: np.ndarray  # [seconds since last tick, len(models)] requests routed per model
    class_arrivals_per_s: np.ndarray  # [seconds since last tick, classes] requests per query class
    vms: tuple[VmView, ...]
    functions: Mapping[str, FunctionView]
    backlog: Mapping[str, float]  # requests waiting in each model's VM queue
    stats: Mapping[str, ModelStats]
    errors: tuple[str, ...] = ()
    class_model_counts: np.ndarray | None = None  # [classes, len(models)] requests over the interval


# --- the policy protocol and its context -------------------------------------------------------
@dataclass(frozen=True)
class QueryClass:
    name: str
    slo_ms: float
    min_accuracy: float
    share: float
    model: str | None = None  # fixed model for baselines
    # The variants the selector may pick for this class (None: every catalog model meeting the
    # floor); the live router's apps name theirs, so one app's class never picks another's.
    variants: tuple[str, ...] | None = None


@dataclass(frozen=True)
class PolicyContext:
    """Everything static a policy may read: config, catalog, classes."""

    config: Any  # controller.config.Config
    catalog: Any  # controller.catalog.Catalog
    classes: tuple[QueryClass, ...]
    horizon_s: float | None = None  # trace length, when known (simulator)


class Selector(Protocol):
    """Router hot path: pick a model variant index (catalog order) for `n` requests of a class."""

    def select(self, class_idx: int, n: int, rng: np.random.Generator) -> np.ndarray: ...

    def observe(self, class_idx: int, model_idx: np.ndarray, latency_ms: np.ndarray,
                slo_met: np.ndarray, correct: np.ndarray, cost_usd: np.ndarray) -> None: ...


class Policy(Protocol):
    name: str
    clairvoyant: bool  # True only for the oracle: the shell hands it the future trace

    def initial_state(self, ctx: PolicyContext, rng: np.random.Generator) -> Any: ...

    def decide(self, obs: Observation, state: Any, rng: np.random.Generator) -> tuple[Plan, Any]: ...

    def selector(self) -> Selector: ...


class PolicyError(Exception):
    """Unknown policy name or a policy that cannot serve this config."""
