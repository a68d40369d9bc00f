"""Step sizes, minibatch streams and augmentation against values worked out by hand.

Both engines and the matrix-form reference draw from these functions, so an
error in them would not show as a disagreement between engines: they are
checked here on their own.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import tiny_scenario

from decentral_bench.experiment.data import augment, minibatch_indices, steps_per_epoch
from decentral_bench.experiment.plan import MethodPlan


def _plan(training: dict, method: dict | None = None) -> MethodPlan:
    scenario = tiny_scenario(training={"rounds": 20, **training},
                             methods=[{"name": "M", "algorithm": "cdsgd", **(method or {})}])
    return MethodPlan.of(scenario, "M")


def test_constant_step_size() -> None:
    plan = _plan({"lr": 0.1})
    assert [plan.lr_at(k) for k in (1, 2, 20)] == [0.1, 0.1, 0.1]


def test_diminishing_step_size_is_alpha0_over_k_plus_1_to_the_epsilon() -> None:
    # α_k = α_0 / (k + 1)^ε for round k = server_round − 1; ε = 0.75:
    # round 1: 0.1 / 1 = 0.1; round 2: 0.1 / 2^0.75 = 0.059460; round 16: 0.1 / 8 = 0.0125.
    plan = _plan({"lr": 0.1, "lr_schedule": "diminishing", "epsilon": 0.75})
    assert plan.lr_at(1) == pytest.approx(0.1, rel=1e-12)
    assert plan.lr_at(2) == pytest.approx(0.0594604, rel=1e-6)
    assert plan.lr_at(16) == pytest.approx(0.0125, rel=1e-12)
    # ε = 1: α_0 / round, the harmonic schedule.
    harmonic = _plan({"lr": 0.3, "lr_schedule": "diminishing", "epsilon": 1.0})
    assert [harmonic.lr_at(k) for k in (1, 3, 10)] == pytest.approx([0.3, 0.1, 0.03])


def test_a_method_lr_overrides_the_scenario_lr_in_the_schedule() -> None:
    plan = _plan({"lr": 0.1, "lr_schedule": "diminishing", "epsilon": 1.0}, {"lr": 0.5})
    assert plan.lr_at(5) == pytest.approx(0.1)


def test_minibatches_are_slices_of_one_shuffle_per_epoch() -> None:
    # 10 samples, batches of 3: 3 batches an epoch, one sample left over each epoch.
    batches = [minibatch_indices(10, 3, 0, 1, step).tolist() for step in range(6)]
    # Pinned: the stream must not change between versions (runs would not reproduce).
    assert batches[:4] == [[8, 7, 2], [5, 1, 0], [9, 4, 3], [7, 3, 5]]
    first_epoch = list(itertools.chain(*batches[:3]))
    assert len(set(first_epoch)) == 9 and set(first_epoch) < set(range(10))
    second_epoch = list(itertools.chain(*batches[3:6]))
    assert len(set(second_epoch)) == 9 and second_epoch != first_epoch
    assert steps_per_epoch(10, 3) == 3 and steps_per_epoch(2, 3) == 1


def test_a_batch_larger_than_the_data_is_the_whole_shuffled_data() -> None:
    assert sorted(minibatch_indices(4, 8, 0, 1, 0).tolist()) == [0, 1, 2, 3]
    assert minibatch_indices(4, 8, 0, 1, 0).tolist() == [1, 3, 0, 2]


def test_minibatch_streams_differ_by_agent_and_seed_and_repeat_exactly() -> None:
    def stream(seed: int, agent: int) -> list[list[int]]:
        return [minibatch_indices(100, 10, seed, agent, step).tolist() for step in range(12)]

    assert stream(0, 0) == stream(0, 0)
    assert stream(0, 0) != stream(0, 1)
    assert stream(0, 0) != stream(1, 0)


def test_augment_crops_a_window_of_the_padded_image_and_may_flip_it() -> None:
    """Each output is one of the 9 × 9 crops of the image padded by 4 pixels, flipped or
    not; over many images every offset and both flips occur."""
    images = torch.arange(64 * 3 * 8 * 8, dtype=torch.float32).reshape(64, 3, 8, 8) + 1
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    out = augment(images, 0, 2, 5)
    seen = set()
    for image, window in zip(padded, out, strict=True):
        found = []
        for row, col in itertools.product(range(9), range(9)):
            crop = image[:, row:row + 8, col:col + 8]
            found += [(row, col, 0)] if torch.equal(window, crop) else []
            found += [(row, col, 1)] if torch.equal(window, crop.flip(-1)) else []
        assert len(found) == 1, "not exactly one crop of the padded image"
        seen.update(found)
    assert {flip for *_, flip in seen} == {0, 1}
    assert len({(row, col) for row, col, _ in seen}) > 20
    assert torch.equal(out, augment(images, 0, 2, 5))
    assert not torch.equal(out, augment(images, 0, 2, 6))


def test_augment_of_a_tiny_image_by_hand() -> None:
    """A 2×2 image [[1, 2], [3, 4]] padded by 4 and cropped to 2×2 at (row 4, column 3)
    is [[0, 1], [0, 3]]; flipped, [[1, 0], [3, 0]] (pinned for seed 0, agent 1, step 7)."""
    images = (torch.arange(4, dtype=torch.float32).reshape(1, 1, 2, 2) + 1).repeat(4, 1, 1, 1)
    out = augment(images, 0, 1, 7)
    assert out[3, 0].tolist() == [[1.0, 0.0], [3.0, 0.0]]
    assert all(out[i].abs().sum() == 0 for i in range(3))  # crops that miss the image
