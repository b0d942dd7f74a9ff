"""Dockerfile.lambda builds as shipped (no docker engine here, so its inputs are checked): every
COPY source exists in the checkout, or is the weights folder that `make lambda-weights` makes
(run here into a temporary folder); every package pyproject.toml installs is copied; the CMD
names a handler that imports."""
from __future__ import annotations

import importlib
import os
import re
import shlex
import subprocess
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
DOCKERFILE = os.path.join(ROOT, "Dockerfile.lambda")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = open(DOCKERFILE).read().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY, build args substituted with their defaults."""
    args, out = {}, []
    for word, rest in _instructions():
        if word == "ARG" and "=" in rest:
            k, v = rest.split("=", 1)
            args[k.strip()] = v.strip()
        elif word == "COPY":
            parts = [p for p in shlex.split(rest) if not p.startswith("--")]
            parts = [re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), p) for p in parts]
            out.append((parts[:-1], parts[-1]))
    return out


def _make_default(var: str) -> str:
    m = re.search(rf"^{var}\s*\?=\s*(\S+)", open(os.path.join(ROOT, "Makefile")).read(), re.M)
    assert m, f"Makefile has no default for {var}"
    return m.group(1)


def test_every_copy_source_is_in_the_checkout_or_made_by_make(tmp_path):
    made_by_make = _make_default("LAMBDA_WEIGHTS_DIR").rstrip("/")
    missing, from_make = [], []
    for sources, _ in _copies():
        for src in sources:
            assert "${" not in src, f"COPY {src}: a build arg without a default"
            if src.rstrip("/") == made_by_make:
                from_make.append(src)
            elif not os.path.exists(os.path.join(ROOT, src)):
                missing.append(src)
    assert missing == [], f"COPY sources missing from the checkout: {missing}"
    assert from_make, "the weights folder is not the one `make lambda-weights` makes"
    # The target really makes it (and copies weights when given): into a temporary folder here.
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "resnet18.params").write_bytes(b"\x00" * 8)
    dest = tmp_path / "lambda-weights"
    subprocess.run(["make", "-s", "-C", ROOT, "lambda-weights", f"LAMBDA_WEIGHTS_DIR={dest}", f"WEIGHTS={weights}"],
                   check=True, capture_output=True)
    assert sorted(os.listdir(dest)) == ["resnet18.params"]
    empty = tmp_path / "empty"
    subprocess.run(["make", "-s", "-C", ROOT, "lambda-weights", f"LAMBDA_WEIGHTS_DIR={empty}"], check=True,
                   capture_output=True)
    assert os.path.isdir(empty) and os.listdir(empty) == []


def test_every_installed_package_is_copied():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        include = tomllib.load(fh)["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {os.path.basename(s.rstrip("/")) for sources, _ in _copies() for s in sources}
    assert {p.rstrip("*") for p in include} <= copied
    assert {"pyproject.toml", "README.md", "constraints.txt"} <= copied


def test_the_cmd_names_a_handler_that_imports():
    cmd = [rest for word, rest in _instructions() if word == "CMD"]
    assert len(cmd) == 1
    handler = re.fullmatch(r'\["([\w.]+)"\]', cmd[0]).group(1)
    module, _, name = handler.rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))
