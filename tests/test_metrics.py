"""Round metrics against their definitions written out directly, and the array codec."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ArrayRecord

from decentral_bench.engines.base import stack_points
from decentral_bench.engines.flower.arrays import from_record, to_record
from decentral_bench.experiment.metrics import average_parameters
from decentral_bench.experiment.metrics import consensus_distance as stacked_consensus_distance

SHAPES = [(3, 1, 2, 2), (3,), (7, 5), (1,)]


def agents(count: int, seed: int = 0, scale: float = 1.0) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [[(scale * rng.standard_normal(shape)).astype(np.float32) for shape in SHAPES]
            for _ in range(count)]


def consensus_distance(parameters: list[list[np.ndarray]]) -> float:
    return stacked_consensus_distance(stack_points(parameters))


def test_consensus_distance_is_the_mean_squared_distance_to_the_average() -> None:
    parameters = agents(5)
    vectors = np.stack([np.concatenate([a.ravel() for a in arrays]).astype(np.float64)
                        for arrays in parameters])
    expected = np.mean([np.sum((vectors.mean(axis=0) - x) ** 2) for x in vectors])
    assert consensus_distance(parameters) == pytest.approx(expected, rel=1e-6)


def test_consensus_distance_of_x_and_minus_x_is_the_squared_norm() -> None:
    x = agents(1, seed=1)[0]
    squared_norm = sum(float(np.sum(a.astype(np.float64) ** 2)) for a in x)
    assert consensus_distance([x, [-a for a in x]]) == pytest.approx(squared_norm, rel=1e-6)
    assert consensus_distance([x, x, x]) == 0.0


def test_consensus_distance_keeps_small_disagreements_between_large_parameters() -> None:
    """A 1e-3 spread on parameters of size 1e3 (a few float32 ulps there): Ξ² of the
    stored float32 points to 1e-6 of its float64 value. A float32 mean alone would be off
    by up to half an ulp, as much as the spread itself."""
    base = agents(1, seed=2, scale=1e3)[0]
    offsets = agents(4, seed=3, scale=1e-3)
    parameters = [[(b + o).astype(np.float32) for b, o in zip(base, offset, strict=True)]
                  for offset in offsets]
    vectors = np.stack([np.concatenate([a.ravel() for a in arrays]).astype(np.float64)
                        for arrays in parameters])
    exact = float(np.mean(np.sum((vectors - vectors.mean(axis=0)) ** 2, axis=1)))
    assert exact > 0
    assert consensus_distance(parameters) == pytest.approx(exact, rel=1e-6)
    centre = np.mean(np.stack([np.concatenate([a.ravel() for a in arrays])
                               for arrays in parameters]), axis=0, dtype=np.float32)
    naive = float(np.mean(np.sum((vectors - centre.astype(np.float64)) ** 2, axis=1)))
    assert naive != pytest.approx(exact, rel=1e-3)  # the case the float64 centre is for


def test_agents_that_agree_exactly_are_at_distance_zero() -> None:
    x = agents(1, seed=4)[0]
    assert consensus_distance([x, x, x]) == 0.0


def test_average_parameters_is_the_layerwise_mean() -> None:
    parameters = agents(3)
    for got, *layers in zip(average_parameters(stack_points(parameters)), *parameters,
                            strict=True):
        np.testing.assert_allclose(got.numpy(), np.mean(layers, axis=0), rtol=1e-6)


def test_records_round_trip_and_read_as_flower_writes_them() -> None:
    arrays = agents(1)[0] + [np.arange(6, dtype=np.int64).reshape(2, 3)]
    record = to_record(arrays)
    stock = ArrayRecord(arrays)
    for ours, flowers, original in zip(record.to_numpy_ndarrays(), from_record(stock), arrays,
                                       strict=True):
        np.testing.assert_array_equal(ours, original)
        np.testing.assert_array_equal(flowers, original)
    copies, views = from_record(record), from_record(record, writable=False)
    assert all(array.flags.writeable for array in copies)
    assert not any(array.flags.writeable for array in views)
    for copy, view, original in zip(copies, views, arrays, strict=True):
        np.testing.assert_array_equal(view, original)
        assert copy.dtype == view.dtype == original.dtype
