"""Spill rule: the wait budget arithmetic and the vectorised VM-or-function routing."""
from __future__ import annotations

import numpy as np
import pytest

from procurement.spill import expected_vm_wait_ms, route_to_vm, vm_wait_budget_ms


def test_budget_is_slo_minus_service_and_overheads():
    assert vm_wait_budget_ms(300.0, 95.2, network_ms=10.0) == pytest.approx(194.8)
    assert vm_wait_budget_ms(300.0, 95.2, safety_frac=0.1) == pytest.approx(174.8)
    b = vm_wait_budget_ms(np.array([100.0, 300.0]), 95.2, safety_ms=5.0)
    assert b == pytest.approx([-0.2, 199.8])


def test_route_to_vm_when_wait_fits_budget():
    wait = np.array([0.0, 50.0, 194.8, 194.9, 500.0])
    assert route_to_vm(wait, 194.8).tolist() == [True, True, True, False, False]
    # per-request budgets (different SLOs in one batch)
    assert route_to_vm(np.array([10.0, 10.0]), np.array([5.0, 20.0])).tolist() == [False, True]


def test_negative_budget_spills_everything():
    budget = vm_wait_budget_ms(50.0, 95.2)
    assert budget < 0 and not route_to_vm(np.zeros(4), budget).any()


def test_expected_wait_grows_in_rounds():
    w = expected_vm_wait_ms(np.array([0, 319, 320, 640]), batch_size=64, batch_latency_ms=51.0, num_slots=5)
    assert w.tolist() == [25.5, 25.5, 76.5, 127.5]
    assert expected_vm_wait_ms(0, 8, 40.0, 1, busy=False) == 0.0


def test_spill_share_rises_with_queue():
    budget = vm_wait_budget_ms(300.0, 95.2)
    pos = np.arange(5000)
    to_vm = route_to_vm(expected_vm_wait_ms(pos, 256, 95.2, 5), budget)
    # the first rounds fit, later ones spill; the split is a prefix of the queue
    assert to_vm[0] and not to_vm[-1]
    assert np.all(np.diff(to_vm.astype(int)) <= 0)
