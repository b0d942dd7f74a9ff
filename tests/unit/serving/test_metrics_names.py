"""The router's /metrics page in Prometheus's base units, as `promtool check metrics` wants:
no `_ms` / `_mb` / `_per_s` names, counters ending `_total`; promtool itself runs when installed
(Debian package `prometheus`)."""
import re
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving.metrics import RouterMetrics

# Abbreviated or non-base units promtool's lint flags in a name (its list, plus our old suffixes).
_BAD = re.compile(r"_(ms|us|mb|kb|gb|milliseconds|microseconds|megabytes|per_s|minutes|hours)(_|$)")


def _page() -> str:
    m = RouterMetrics()
    s = m.served("digits", "digits-small", "vm")
    s.requests_ok.inc()
    s.latency_s.observe(0.012)
    s.slo_violations.inc()
    m.cold_starts.labels("digits-small").inc()
    m.feedback.labels("digits", "digits-small", "true").inc()
    m.inflight("digits-small").set(3)
    m.function_instances.labels("digits-small").set(1)
    m.set_function_memory_mb("digits-small", 1769)
    m.set_route_budget_ms("digits-small", 120.0)
    m.route_share.labels("digits-small", "head").set(0.5)
    m.routed.labels("digits-small", "head").inc()
    m.set_control({"cost_usd": {"vm": 0.1, "function": 0.01, "total": 0.11},
                   "fleet": [{"instance_type": "local.small", "model": "digits-small", "state": "serving"}],
                   "forecast": {"digits": {"mean_per_s": 2.0, "upper_per_s": 3.0}},
                   "arrivals_per_s": {"digits": 2.5},
                   "tick": {"ticks": 4, "errors": {"tick": 1}, "last_duration_s": 0.01, "last_good_s": 1.0}})
    return m.exposition()[0].decode()


def test_names_are_in_base_units():
    fams = list(text_string_to_metric_families(_page()))
    names = {f.name for f in fams}
    assert {"hybridserve_latency_seconds", "hybridserve_function_memory_bytes",
            "hybridserve_route_vm_wait_budget_seconds", "hybridserve_forecast_requests_per_second"} <= names
    for f in fams:
        assert not _BAD.search(f.name), f.name
        if f.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in f.samples), f.name
    by_name = {s.name: s.value for f in fams for s in f.samples if not s.labels.get("le")}
    assert by_name["hybridserve_function_memory_bytes"] == 1769 * 1024 * 1024
    assert by_name["hybridserve_route_vm_wait_budget_seconds"] == pytest.approx(0.12)
    assert by_name["hybridserve_latency_seconds_sum"] == pytest.approx(0.012)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)")
def test_promtool_check_metrics_is_clean():
    out = subprocess.run(["promtool", "check", "metrics"], input=_page(), capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), out.stdout + out.stderr
