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
