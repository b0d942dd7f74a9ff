"""Whole-run properties of the simulator on real trace slices."""
import csv
import os
import subprocess
import sys

import pytest

from controller.sim.run import simulate

POLICIES = ["vm-reactive", "lambda-only", "spock", "mark", "oracle", "hybrid"]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cfg(config, **sim):
    return config.model_copy(update={"simulator": config.simulator.model_copy(update=sim)})


@pytest.fixture(scope="module", params=[("wits", 0, 2400), ("berkeley", 30000, 2400)], ids=["wits", "berkeley"])
def trace_slice(request):
    return request.param


@pytest.fixture(scope="module")
def report(trace_slice, config, catalog):
    trace, start, dur = trace_slice
    return simulate(_cfg(config, start_s=start, duration_s=dur), catalog, trace, POLICIES)


def test_conservation(report, trace_slice):
    from controller.trace import load_trace
    trace, start, dur = trace_slice
    arrivals = int(load_trace(trace)[start:start + dur].sum())  # the slice's requests, from the trace
    for r in report.results:
        assert r.requests == arrivals > 0
        assert sum(r.model_requests) == r.requests  # each sent to exactly one model
        assert r.latency_hist.sum() == r.served  # each served one has one latency
        assert r.function_latency_hist.sum() == r.served_function
        assert (r.function_latency_hist <= r.latency_hist).all()
        assert r.requests == report.results[0].requests  # every policy saw the same arrivals


def test_lower_bound_below_every_policy_that_dropped_nothing(report):
    lb = next(row["total_cost_usd"] for row in report.table if row["policy"] == "lower-bound")
    for r in report.results:
        if r.dropped == 0:
            assert lb <= r.total_usd


def test_oracle_meets_nearly_every_slo_and_is_cheapest_at_its_violation_level(report):
    # Every policy, hybrid included: the optimum has every freedom a policy has (issue 18).
    by = {r.policy: r for r in report.results}
    assert "hybrid" in by
    o = by["oracle"]
    viol = lambda r: r.slo_violations / r.requests
    assert viol(o) <= 0.001
    for name, r in by.items():
        if name != "oracle" and viol(r) <= viol(o):
            assert o.total_usd <= r.total_usd, name


def test_same_seed_same_report_different_seed_differs(config, catalog):
    # lambda-only too: its cold starts depend on the arrival offsets, so another seed shows.
    cfg = _cfg(config, duration_s=600)
    a = simulate(cfg, catalog, "wits", ["spock", "lambda-only"]).table
    b = simulate(cfg, catalog, "wits", ["spock", "lambda-only"]).table
    strip = lambda t: [{k: v for k, v in r.items() if k != "sim_requests_per_s"} for r in t]
    assert strip(a) == strip(b)
    c = simulate(_cfg(config, duration_s=600, seed=7), catalog, "wits", ["spock", "lambda-only"]).table
    assert strip(a) != strip(c)


def test_even_arrivals_are_deterministic_without_rng(config, catalog):
    cfg = _cfg(config, duration_s=300, arrivals="even")
    a = simulate(cfg, catalog, "wits", ["vm-reactive"]).results[0]
    b = simulate(_cfg(config, duration_s=300, arrivals="even", seed=5), catalog, "wits", ["vm-reactive"]).results[0]
    assert a.total_usd == b.total_usd and a.slo_violations == b.slo_violations


def test_the_decision_log_has_a_line_per_tick_with_the_plans_launches(config, catalog, tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("HYBRIDSERVE_DECISION_LOG", str(tmp_path / "d.jsonl"))
    r = simulate(_cfg(config, duration_s=600), catalog, "wits", ["hybrid"]).results[0]
    lines = [json.loads(x) for x in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert len(lines) == len(r.tick_ms) > 10 and {d["side"] for d in lines} == {"sim"}
    assert sum(len(d["launches"]) for d in lines) >= 1  # WITS's first 10 minutes buy VMs
    # After the first tick (which a warm start shows the minute before the trace), each tick
    # shows the seconds since the last one: every trace second once, no request twice.
    assert sum(d["seconds"] for d in lines[1:]) == lines[-1]["now_s"] - lines[0]["now_s"]
    # The arrivals those ticks show are the trace's over the same seconds, exactly.
    from controller.trace import load_trace
    shown_s = int(lines[-1]["now_s"] - lines[0]["now_s"])
    assert sum(sum(d["class_arrivals"]) for d in lines[1:]) == int(load_trace("wits")[:shown_s].sum()) > 0


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "controller.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_writes_csv_and_plots_byte_identical(tmp_path):
    outs = []
    for name in ("a", "b"):
        out = tmp_path / name
        r = _cli("simulate", "--trace", "wits", "--duration-s", "300", "--policies", "spock,oracle",
                 "--slo-ms", "300", "--out", str(out))
        assert r.returncode == 0, r.stderr
        assert "oracle" in r.stdout and "lower-bound" in r.stdout
        rows = list(csv.DictReader(open(out / "report.csv")))
        assert {"policy", "total_cost_usd", "slo_violation_pct"} <= set(rows[0])
        assert [x["policy"] for x in rows] == ["spock", "oracle", "lower-bound"]
        for png in ("capacity.png", "cost.png", "latency_cdf.png"):
            assert (out / png).stat().st_size > 1000
        outs.append([{k: v for k, v in x.items() if k != "sim_requests_per_s"} for x in rows])
    assert outs[0] == outs[1]


@pytest.mark.parametrize("args,needle", [
    (["simulate", "--trace", "/no/such.csv"], "not found"),
    (["simulate", "--trace", "wits", "--policies", "nope"], "unknown policy 'nope'"),
    (["simulate", "--config", "/no/cfg.yaml"], "config file not found"),
    (["simulate", "--slo-ms", "-3"], "--slo-ms"),
    (["simulate", "--rate-scale", "abc"], "invalid float"),
    (["simulate", "--rate-scale", "0"], "rate_scale"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_is_one_line_exit_2(args, needle):
    r = _cli(*args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_malformed_trace_file_exit_2(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("second,requests\n0,x\n")
    r = _cli("simulate", "--trace", str(p))
    assert r.returncode == 2 and "malformed" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_config_error_exit_2(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("apps:\n  - {name: a, slo_ms: 100, min_accuracy: 2}\n")
    r = _cli("simulate", "--config", str(p))
    assert r.returncode == 2 and "apps.0.min_accuracy" in r.stderr


def test_unsatisfiable_app_exit_2(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("apps:\n  - {name: a, slo_ms: 100, min_accuracy: 0.99}\n")
    r = _cli("simulate", "--config", str(p), "--duration-s", "60")
    assert r.returncode == 2 and "no model meets accuracy 0.99" in r.stderr


def test_the_percentile_by_backend_splits_the_served_requests(report):
    # Where functions served, their latency percentiles come from their requests alone: the
    # all-request p95 lies between the VMs' and the functions' (a mixture's quantile does).
    spilled = [r for r in report.results if r.served_function >= 20 and r.served_vm >= 20]
    assert spilled, "no policy spilled on this slice"
    for r in spilled:
        lo, hi = sorted((r.percentile_ms(95, "vm"), r.percentile_ms(95, "function")))
        assert lo <= r.percentile_ms(95) <= hi
