"""Shared fixtures: the default config and catalog, loaded once."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture(scope="session")
def config():
    from controller.config import load_config
    return load_config(os.path.join(ROOT, "configs", "default.yaml"))


@pytest.fixture(scope="session")
def catalog(config):
    from controller.catalog import load_catalog
    return load_catalog(config.catalog.dir)


@pytest.fixture(scope="session")
def serving_cache(tmp_path_factory):
    """One fresh cache directory per test session for derived files (ONNX exports, trained
    digits models), never the user's ~/.cache/hybridserve; tests/unit/serving and
    tests/unit/live use it for every test."""
    path = tmp_path_factory.mktemp("hybridserve-cache")
    old = os.environ.get("HYBRIDSERVE_CACHE")
    os.environ["HYBRIDSERVE_CACHE"] = str(path)
    yield str(path)
    if old is None:
        os.environ.pop("HYBRIDSERVE_CACHE", None)
    else:
        os.environ["HYBRIDSERVE_CACHE"] = old
