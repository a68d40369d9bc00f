"""Data sets, their per-agent partitions, and the minibatch schedule.

Everything here is deterministic under the scenario seed, so that a Flower
client and the plain-PyTorch reference loop draw the same minibatches.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from decentral_bench.scenario import DatasetConfig


@dataclass(frozen=True)
class Dataset:
    """A training and a held-out test split as tensors, features already normalised."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])


def _split(features: np.ndarray, labels: np.ndarray, test_fraction: float,
           seed: int) -> Dataset:
    from sklearn.model_selection import train_test_split

    train_x, test_x, train_y, test_y = train_test_split(
        features, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    mean = train_x.mean(axis=0)
    std = train_x.std(axis=0)
    std[std == 0] = 1.0
    return Dataset(
        train_x=torch.as_tensor((train_x - mean) / std, dtype=torch.float32),
        train_y=torch.as_tensor(train_y, dtype=torch.int64),
        test_x=torch.as_tensor((test_x - mean) / std, dtype=torch.float32),
        test_y=torch.as_tensor(test_y, dtype=torch.int64),
        num_classes=int(labels.max()) + 1,
    )


@lru_cache(maxsize=4)
def load_dataset(config: DatasetConfig, seed: int) -> Dataset:
    """The data set a scenario names, split into train and test with `seed`."""
    if config.name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        return _split(digits.data.astype(np.float32), digits.target, config.test_fraction, seed)
    raise ValueError(f"unknown data set {config.name!r}")


@lru_cache(maxsize=16)
def partition_indices(config: DatasetConfig, seed: int, agents: int) -> tuple[np.ndarray, ...]:
    """Disjoint index sets into the training split, one per agent, covering all of it."""
    size = len(load_dataset(config, seed).train_y)
    if agents > size:
        raise ValueError(f"{agents} agents but only {size} training samples")
    if config.partition.kind == "iid":
        order = np.random.default_rng([seed, 1]).permutation(size)
        return tuple(np.sort(part) for part in np.array_split(order, agents))
    raise ValueError(f"unknown partition {config.partition.kind!r}")


@lru_cache(maxsize=256)
def _epoch_order(size: int, seed: int, agent: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, 2, agent, epoch]).permutation(size)


def minibatch_indices(size: int, batch_size: int, seed: int, agent: int, step: int) -> np.ndarray:
    """Positions (into an agent's own data) of the minibatch of its `step`-th SGD step.

    Each epoch is a fresh shuffle without replacement (Algorithm 1, line 3);
    the batches of an epoch are consecutive slices of it, the remainder that
    does not fill a batch is left to later epochs' shuffles.
    """
    if batch_size >= size:
        return _epoch_order(size, seed, agent, step)
    batches_per_epoch = size // batch_size
    epoch, position = divmod(step, batches_per_epoch)
    order = _epoch_order(size, seed, agent, epoch)
    return order[position * batch_size:(position + 1) * batch_size]


def steps_per_epoch(size: int, batch_size: int) -> int:
    """Number of minibatch steps that make one pass over `size` samples."""
    return max(1, size // batch_size)
