"""BucketHistory: per-second counts folded into 10-s bucket rates."""
import numpy as np
import pytest

from procurement.forecast.history import BucketHistory


def test_uneven_chunks_fold_into_bucket_rates():
    h = BucketHistory(bucket_s=10, capacity=100)
    counts = np.arange(30, dtype=float)  # buckets sum 45, 145, 245
    h.observe(7, counts[:7])
    h.observe(22, counts[7:22])
    h.observe(30, counts[22:])
    np.testing.assert_allclose(h.recent(), [4.5, 14.5, 24.5])
    assert h.num_done == 3


def test_gap_counts_as_zero_arrivals_and_ring_keeps_the_newest():
    h = BucketHistory(bucket_s=10, capacity=3)
    h.observe(10, np.full(10, 5.0))
    h.observe(60, np.full(10, 2.0))  # seconds 10-49 skipped
    assert h.num_done == 6
    np.testing.assert_allclose(h.recent(), [0.0, 0.0, 2.0])


def test_time_going_backwards_or_2d_counts_rejected():
    h = BucketHistory(bucket_s=10, capacity=10)
    h.observe(20, np.ones(20))
    with pytest.raises(ValueError, match="backwards"):
        h.observe(25, np.ones(10))
    with pytest.raises(ValueError, match="1-D"):
        h.observe(40, np.ones((10, 2)))
    with pytest.raises(ValueError, match=">= 0"):
        h.observe(40, -np.ones(10))
