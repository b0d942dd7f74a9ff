"""Function batching live (issue 12): a daemon of its own (bench/live_infless.py's config: the
function tier only, a pinned batch configuration) under a steady trickle; every request is
answered by a function and several requests share each invocation. Slow: a daemon start (~1 min)."""
import math
import os
import sys

import numpy as np
import pytest

pytestmark = [pytest.mark.live, pytest.mark.slow]
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from bench.live_infless import run_mode  # noqa: E402


def test_spilled_requests_share_invocations():
    offsets_s = np.arange(0.0, 10.0, 1 / 15)  # 15 req/s for 10 s
    batch = [{"batch_size": 8, "wait_ms": 300.0, "rate_lo_per_s": 0.0, "rate_hi_per_s": math.inf}]
    r = run_mode("digits-small", 1024, batch, offsets_s, slo_ms=1000.0, warmup_s=10.0, slack_ms=50.0)
    assert r["errors"] == {} and r["ok"] == r["requests"] == len(offsets_s), r
    assert r["function"] >= 0.9 * r["requests"], r
    assert r["invocations"] < r["function"] / 2, r  # batches of more than 2 on average
    assert r["violation_pct"] < 10.0, r
