"""The live catalog: measured function cold starts and the proxy + router time added to the rows
the policy and the simulator plan with (measurements injected: no model, no server)."""
import pytest

from controller.config import load_config
from controller.live.live_catalog import (add_router_overhead, add_vm_path_overhead, build_live_catalog,
                                          head_catalog_type, read_latency_jitter_ms)

MODELS = ["digits-large", "digits-small"]
ACC = {"digits-large": 0.98, "digits-small": 0.9}
FORWARD_MS = {1: 1.0, 2: 1.2, 4: 1.5, 8: 2.0}


def _build(tmp_path, **kw):
    cfg = load_config("tests/integration/live.yaml")
    return build_live_catalog(cfg.catalog.dir, str(tmp_path), MODELS, ACC, ["local.small", "local.medium"], 1.0,
                              measure=lambda v: (FORWARD_MS, 50.0), **kw)


def test_function_cold_start_is_the_measured_one_less_what_the_simulator_adds(tmp_path):
    asked = []

    def cold(v):
        asked.append(v)
        return 4200.0, 20.0

    cat = _build(tmp_path, function_cold=cold, container_init_ms=800.0)
    assert asked == ["digits-large"]  # once: the runtime import dominates
    assert {cat.model(m).cold_start_ms for m in MODELS} == {4200.0 - 20.0 - 800.0}
    assert set(cat.instance_types) == {"local.small", "local.medium"}


def test_without_or_failing_function_measure_the_load_time_stays(tmp_path):
    assert _build(tmp_path / "a").model("digits-small").cold_start_ms == 50.0

    def broken(v):
        raise RuntimeError("throttled")

    assert _build(tmp_path / "b", function_cold=broken).model("digits-small").cold_start_ms == 50.0


def test_router_overhead_is_added_to_the_variant_rows_only(tmp_path):
    cat = _build(tmp_path)
    before_fn = cat.function_profile("digits-large").latency_ms(1769)
    cat = add_router_overhead(cat, {"digits-small": [12.0, 13.5, 14.0, 13.5, 40.0]})  # median 13.5 = 1 + 12.5
    assert cat.vm_profile("digits-small", "local.small").latency_at(1) == pytest.approx(1.0 + 12.5)
    assert cat.vm_profile("digits-small", "local.medium").latency_at(8) == pytest.approx(2.0 + 12.5)
    assert cat.vm_profile("digits-large", "local.small").latency_at(1) == pytest.approx(1.0)
    assert cat.function_profile("digits-small").latency_ms(1769) == pytest.approx(1.0 + 12.5)
    assert cat.function_profile("digits-large").latency_ms(1769) == pytest.approx(before_fn)
    assert read_latency_jitter_ms(cat.directory) == [-1.5, 0.0, 0.5, 0.0, 26.5]


def test_the_head_gets_its_own_rows_and_only_procured_types_the_vm_path(tmp_path):
    cat = _build(tmp_path, head_type="local.small")
    head = head_catalog_type("local.small")
    assert set(cat.instance_types) == {"local.small", "local.medium", head}
    assert cat.instance_type(head).on_demand_usd_per_h == cat.instance_type("local.small").on_demand_usd_per_h
    assert cat.vm_profile("digits-small", head).latency_at(4) == pytest.approx(1.5)
    cat = add_vm_path_overhead(cat, {"digits-small": [7.0, 9.0, 30.0]})  # median 9
    assert cat.vm_profile("digits-small", "local.small").latency_at(1) == pytest.approx(1.0 + 9.0)
    assert cat.vm_profile("digits-small", "local.medium").latency_at(8) == pytest.approx(2.0 + 9.0)
    assert cat.vm_profile("digits-small", head).latency_at(1) == pytest.approx(1.0)
    assert cat.vm_profile("digits-large", "local.small").latency_at(1) == pytest.approx(1.0)
    assert cat.function_profile("digits-small").latency_ms(1769) == pytest.approx(1.0)


def test_without_a_head_type_no_head_rows(tmp_path):
    assert set(_build(tmp_path).instance_types) == {"local.small", "local.medium"}
