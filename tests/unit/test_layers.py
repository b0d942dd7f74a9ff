"""Imports run one way (docs/architecture.md): the allowed arrows between layers, written once
here, checked against every import statement of the project's packages, lazy ones included.

A module's layer is the first entry of LAYERS whose prefix names it; a module of `controller/`
itself (controller/catalog.py, ...) is on the floor unless a prefix above claims it."""
from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = ("controller", "selector", "procurement", "serving")

# (module prefix, layer), most specific first.
LAYERS = [
    ("controller.cli", "top"), ("controller.aws_command", "top"),
    ("controller.profiler", "top"), ("controller.tuning", "top"),
    ("controller.sim", "sim"), ("controller.live", "live"),
    ("controller.policies", "policies"),
    ("controller", "floor"),
    ("selector", "selector"), ("procurement", "procurement"), ("serving", "serving"),
]

# layer -> the layers it may import (itself included). The two shells never import each other.
ALLOWED = {
    "floor": {"floor"},
    "selector": {"floor", "selector"},
    "procurement": {"floor", "selector", "procurement"},
    "policies": {"floor", "selector", "procurement", "policies"},
    "serving": {"floor", "selector", "procurement", "serving"},
    "sim": {"floor", "selector", "procurement", "policies", "sim"},
    "live": {"floor", "selector", "procurement", "policies", "serving", "live"},
    "top": {"floor", "selector", "procurement", "policies", "serving", "sim", "live", "top"},
}


def layer_of(module: str) -> str | None:
    for prefix, layer in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return layer
    return None


def project_imports(path: str) -> list[tuple[int, str]]:
    """(line, module) of every absolute import of a project package in the file."""
    out = []
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from serving import oip` imports serving.oip: judge the submodule when it is one.
            out += [(node.lineno, f"{node.module}.{a.name}") if _is_module(f"{node.module}.{a.name}")
                    else (node.lineno, node.module) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: relative import; the project imports absolutely")
    return [(n, m) for n, m in out if m.split(".")[0] in PACKAGES]


def _is_module(name: str) -> bool:
    base = os.path.join(ROOT, *name.split("."))
    return os.path.isfile(base + ".py") or os.path.isfile(os.path.join(base, "__init__.py"))


def modules():
    for pkg in PACKAGES:
        for dirpath, _, files in os.walk(os.path.join(ROOT, pkg)):
            for f in sorted(files):
                if f.endswith(".py"):
                    path = os.path.join(dirpath, f)
                    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    yield rel.removesuffix(".__init__"), path


def forbidden_imports() -> list[str]:
    bad = []
    for module, path in modules():
        src = layer_of(module)
        assert src is not None, f"{module} is in no layer; add it to LAYERS"
        for line, target in project_imports(path):
            dst = layer_of(target)
            if dst not in ALLOWED[src]:
                bad.append(f"{os.path.relpath(path, ROOT)}:{line}: {module} ({src}) imports {target} ({dst})")
    return bad


def test_imports_run_one_way():
    bad = forbidden_imports()
    assert not bad, "imports against the layering (docs/architecture.md):\n" + "\n".join(bad)


def test_registered_policies_sit_on_the_policy_floor_or_below():
    """The registry imports its targets by name, which no import statement shows (tests register
    their own policies too: only the project's are judged)."""
    from controller.policies.registry import _REGISTRY

    builtin = {n: t for n, t in _REGISTRY.items() if t.split(".")[0] in PACKAGES}
    assert {"hybrid", "mark", "oracle", "vm-reactive"} <= set(builtin)
    for name, target in builtin.items():
        assert layer_of(target.partition(":")[0]) in ALLOWED["policies"], f"policy {name!r} -> {target}"


@pytest.mark.parametrize("module,target,allowed", [
    ("controller.catalog", "serving.cop", False),
    ("procurement.hybrid", "controller.policies.sizing", False),
    ("controller.live.control_loop", "controller.sim.engine", False),
    ("controller.sim.engine", "serving.router", False),
    ("serving.router", "selector", True),
    ("controller.cli", "controller.live.daemon", True),
])
def test_the_rule_itself(module, target, allowed):
    """The table says what the issue says, so a wrong table cannot pass the first test."""
    assert (layer_of(target) in ALLOWED[layer_of(module)]) is allowed
