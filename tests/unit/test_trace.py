"""Trace loading, slicing, scaling and compression."""
import numpy as np
import pytest

from controller.trace import TraceError, load_trace, prepare


def test_named_traces_load():
    wits = load_trace("wits")
    assert len(wits) == 46798 and wits.sum() == 6691332


def test_gaps_in_seconds_are_zero(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("second,requests\n0,5\n3,7\n")
    assert load_trace(str(p)).tolist() == [5, 0, 0, 7]


@pytest.mark.parametrize("text,match", [
    ("sec,req\n0,1\n", "header"),
    ("second,requests\n", "no rows"),
    ("second,requests\n0,abc\n", "malformed"),
    ("second,requests\n0,-1\n", "non-negative"),
    ("second,requests\n1,1\n0,1\n", "increase"),
    ("second,requests\n0,1,2\n", "2 columns"),
])
def test_malformed_traces_name_the_problem(tmp_path, text, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(TraceError, match=match):
        load_trace(str(p))


def test_missing_trace():
    with pytest.raises(TraceError, match="not found"):
        load_trace("/no/such.csv")


def test_rate_scale_keeps_totals_exact():
    c = np.array([10, 10, 10, 10])
    assert prepare(c, rate_scale=0.25).sum() == 10
    assert set(prepare(c, rate_scale=0.25).tolist()) == {2, 3}
    assert prepare(np.full(1000, 3), rate_scale=0.05).sum() == 150


def test_speedup_sums_trace_seconds():
    c = np.arange(10)
    assert prepare(c, speedup=5).tolist() == [0 + 1 + 2 + 3 + 4, 5 + 6 + 7 + 8 + 9]
    assert prepare(c, speedup=4).tolist() == [6, 22, 17]


def test_slice():
    c = np.arange(100)
    assert prepare(c, start_s=10, duration_s=3).tolist() == [10, 11, 12]
    with pytest.raises(TraceError):
        prepare(c, start_s=100)
