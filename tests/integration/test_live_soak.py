"""Short forms of bench/soak.py against the session's daemon: steady load while the RSS and open
file descriptors of the daemon and all its descendants are sampled. Every request is answered
(none lost); over ~60 s (slow) the fd count does not creep and RSS grows less than it would
at a leak of a few MB a minute. The default check is a 12 s burst with the same accounting."""
import os
import sys

import pytest

pytestmark = pytest.mark.live
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from bench.soak import sample, soak  # noqa: E402


def test_short_load_loses_nothing_and_leaks_no_fds(live):
    before = sample(live.proc.pid)
    res = soak(live.url, live.proc.pid, duration_s=12, rate_per_s=5, cycle_s=12, sample_s=3, log=lambda *_: None)
    c = res["counts"]
    assert c["sent"] >= 30 and c["lost"] == 0 and c["ok"] == c["sent"], c
    after = sample(live.proc.pid)
    # Function workers or a VM node may come and go; beyond that, no fd growth per request.
    assert after["fds"] - before["fds"] <= 60 * max(0, after["procs"] - before["procs"]) + 20


@pytest.mark.slow
def test_minute_soak_is_stable(live):
    res = soak(live.url, live.proc.pid, duration_s=60, rate_per_s=8, cycle_s=30, sample_s=5, log=lambda *_: None)
    c = res["counts"]
    assert c["lost"] == 0 and c["ok"] == c["sent"], c
    assert res["fds_stable"] and res["rss_slope_mb_per_h"] < 0.25 * res["rss_mean_mb"], res
