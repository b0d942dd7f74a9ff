"""Policies by name: the simulator, the live control loop and the CLI make a policy from the
name a config or a command line gives. Targets are "module:factory" strings imported on first
use, so listing the names or running one policy does not import them all (the oracle pulls in
scipy's MILP, hybrid the forecasters). Factories take a PolicyContext and return a Policy."""
from __future__ import annotations

import importlib
import importlib.util
from typing import Callable

from controller.core import Policy, PolicyContext, PolicyError

_REGISTRY: dict[str, str] = {
    "vm-reactive": "controller.policies.reactive:VmReactive",
    "lambda-only": "controller.policies.lambda_only:LambdaOnly",
    "spock": "controller.policies.reactive:Spock",
    "mark": "controller.policies.mark:Mark",
    "oracle": "controller.policies.oracle:Oracle",
    "hybrid": "procurement.hybrid:Hybrid",
}


def register(name: str, target: str) -> None:
    _REGISTRY[name] = target


def policy_names() -> list[str]:
    return sorted(n for n in _REGISTRY if _available(n))


def _available(name: str) -> bool:
    mod, _, _ = _REGISTRY[name].partition(":")
    return importlib.util.find_spec(mod) is not None


def make_policy(name: str, ctx: PolicyContext, **kwargs) -> Policy:
    if name not in _REGISTRY or not _available(name):
        raise PolicyError(f"unknown policy {name!r}; known: {', '.join(policy_names())}")
    mod, _, attr = _REGISTRY[name].partition(":")
    factory: Callable = getattr(importlib.import_module(mod), attr)
    return factory(ctx, **kwargs)
