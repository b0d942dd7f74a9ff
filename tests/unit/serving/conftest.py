"""Every serving test writes derived files (ONNX exports, trained digits models) to one
fresh cache directory per test session, never to the user's ~/.cache/hybridserve."""
import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def serving_cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("hybridserve-cache")
    old = os.environ.get("HYBRIDSERVE_CACHE")
    os.environ["HYBRIDSERVE_CACHE"] = str(path)
    yield str(path)
    if old is None:
        os.environ.pop("HYBRIDSERVE_CACHE", None)
    else:
        os.environ["HYBRIDSERVE_CACHE"] = old
