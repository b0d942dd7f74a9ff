"""Short form of bench/fuzz_api.py (~200 cases): requests generated from the daemon's OpenAPI
document (schemathesis) and hypothesis-drawn bodies get no 5xx, every 4xx is a JSON error, and
the server still serves afterwards. The 5,000-case run is the benchmark (BENCHMARKS.md fuzz-api)."""
import os
import sys

import pytest

pytestmark = pytest.mark.live
pytest.importorskip("schemathesis")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from bench.fuzz_api import alive, fuzz  # noqa: E402


def test_fuzzed_requests_get_no_5xx(live):
    tally = fuzz(live.url, 200)
    assert tally.cases >= 150
    assert tally.status.get(500, 0) == 0 and not tally.failures, tally.failures[:5]
    assert alive(live.url)
