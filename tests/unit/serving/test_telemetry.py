"""serving.telemetry.IntervalStats: what the router hands the control loop each tick."""
from serving.telemetry import IntervalStats


def test_take_splits_seconds_classes_and_models_and_carries_the_open_second():
    t = IntervalStats(["digits"], ["a", "b"], start_s=100.2)
    t.arrival(100.5, "digits", "a")
    t.arrival(101.1, "digits", "b")
    t.arrival(101.9, "", "b")  # a request naming a variant: no class
    t.arrival(102.4, "digits", "a")  # the unfinished second at take(102.6)
    t.outcome("a", "vm", 10.0, True)
    t.outcome("b", "function", 300.0, False, function_usd=2e-6)
    d = t.take(102.6)
    assert d["start_s"] == 100 and d["end_s"] == 102
    assert d["class_arrivals"] == [[1], [1]] and d["model_arrivals"] == [[1, 0], [0, 2]]
    assert d["class_model_counts"] == [[2, 1]]
    assert d["stats"]["b"] == {"served_vm": 0, "served_function": 1, "dropped": 0, "slo_violations": 1,
                               "p95_latency_ms": 300.0}
    assert d["function_usd"] == {"b": 2e-6}
    nxt = t.take(103.0)
    assert nxt["start_s"] == 102 and nxt["class_arrivals"] == [[1]] and nxt["stats"] == {}
