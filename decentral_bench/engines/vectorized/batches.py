"""Every agent's minibatch of a step, drawn exactly as its own ClientApp would draw it.

Agent j's `step`-th minibatch is `data.epoch_order(n_j, seed, j, epoch)[start:stop]`
(`data.batch_slot`) of its partition, augmented with `data.augment` when the
scenario asks, its labels flipped when j is a label-flipping attacker: the same
stream as `agent.AgentSetup.minibatch`. Each agent's
current epoch order is kept, so a step costs one slice per agent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from decentral_bench.experiment.data import augment, batch_slot, epoch_order, evaluation_indices
from decentral_bench.experiment.plan import MethodPlan
from strategies.attacks import flip_labels


class AgentBatches:
    """The training split on the device, and every agent's minibatches and evaluation set."""

    def __init__(self, plan: MethodPlan, device: torch.device) -> None:
        dataset = plan.dataset
        self.plan = plan
        self.device = device
        self.train_x = dataset.train_x.to(device, plan.dtype)
        self.train_y = dataset.train_y.to(device)
        self.test_x = dataset.test_x.to(device, plan.dtype)
        self.test_y = dataset.test_y.to(device)
        self.partitions = plan.partitions
        self.sizes = np.array([len(part) for part in self.partitions])
        self.classes = dataset.num_classes
        self.poisoned_from = {agent: first for agent in plan.attackers
                              if (first := plan.poisoned_from(agent, int(self.sizes[agent])))
                              is not None}
        self._orders: dict[int, tuple[int, np.ndarray]] = {}

    def _positions(self, agent: int, step: int) -> np.ndarray:
        size = int(self.sizes[agent])
        epoch, start, stop = batch_slot(size, self.plan.batch_size, step)
        cached = self._orders.get(agent)
        if cached is None or cached[0] != epoch:
            cached = (epoch, epoch_order(size, self.plan.seed, agent, epoch))
            self._orders[agent] = cached
        return cached[1][start:stop]

    def minibatches(self, agents: Sequence[int], steps: Sequence[int],
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Features (n×B×...), labels (n×B) of `agents[i]`'s `steps[i]`-th minibatch, and
        per-sample weights (1/|batch| on real samples, 0 on padding) when some agent's
        batch is short (its data is smaller than the batch size); None otherwise."""
        rows = [self.partitions[agent][self._positions(agent, step)]
                for agent, step in zip(agents, steps, strict=True)]
        width = max(len(row) for row in rows)
        index = np.zeros((len(rows), width), dtype=np.int64)
        weights = None
        if any(len(row) < width for row in rows):
            weights = np.zeros((len(rows), width), dtype=np.float32)
        for i, row in enumerate(rows):
            index[i, :len(row)] = row
            if weights is not None:
                weights[i, :len(row)] = 1.0 / len(row)
        where = torch.from_numpy(index).to(self.device)
        features, labels = self.train_x[where], self.train_y[where]
        flipped = [i for i, (agent, step) in enumerate(zip(agents, steps, strict=True))
                   if step >= self.poisoned_from.get(agent, step + 1)]
        if flipped:
            poisoned = torch.as_tensor(flipped, device=self.device)
            labels[poisoned] = flip_labels(labels[poisoned], self.classes)
        if self.plan.scenario.dataset.augment:
            features = torch.stack([
                augment(features[i], self.plan.seed, agent, step)
                for i, (agent, step) in enumerate(zip(agents, steps, strict=True))])
        return features, labels, None if weights is None else \
            torch.from_numpy(weights).to(self.device, self.plan.dtype)

    def evaluation_sets(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each agent's training-evaluation samples (the seeded `eval_samples` subset of its
        partition) as an index into the training split (N×M, padded) and a validity mask."""
        limit, seed = self.plan.scenario.training.eval_samples, self.plan.seed
        rows = [part[evaluation_indices(len(part), limit, seed)] for part in self.partitions]
        width = max(len(row) for row in rows)
        index = np.zeros((len(rows), width), dtype=np.int64)
        valid = np.zeros((len(rows), width), dtype=bool)
        for i, row in enumerate(rows):
            index[i, :len(row)] = row
            valid[i, :len(row)] = True
        return torch.from_numpy(index).to(self.device), torch.from_numpy(valid).to(self.device)

    def common_training_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The training samples every agent is evaluated on when training accuracy is
        measured on common data (the seeded `eval_samples` subset of the whole split)."""
        keep = evaluation_indices(len(self.train_y), self.plan.scenario.training.eval_samples,
                                  self.plan.seed)
        where = torch.from_numpy(keep).to(self.device)
        return self.train_x[where], self.train_y[where]

    def test_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The test samples every agent is evaluated on (the seeded subset when set)."""
        keep = evaluation_indices(len(self.test_y), self.plan.scenario.training.eval_samples,
                                  self.plan.seed)
        where = torch.from_numpy(keep).to(self.device)
        return self.test_x[where], self.test_y[where]
