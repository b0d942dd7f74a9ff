"""Every test here writes derived files to the session's fresh cache (tests/conftest.py)."""
import pytest


@pytest.fixture(scope="session", autouse=True)
def _fresh_cache(serving_cache):
    yield serving_cache
