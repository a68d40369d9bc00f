"""One agent: its data, its minibatch stream, its gradient oracle and its evaluation.

Engine-neutral: the ClientApp, the vectorized engine and the matrix-form
reference all draw agent j's minibatches from here, so they train on the same
samples in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from decentral_bench.experiment.data import augment, evaluation_subset, minibatch_indices
from decentral_bench.experiment.models import build_model
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.experiment.training import evaluate, gradient, select_device, step_seed
from decentral_bench.scenario import ModelConfig
from strategies.attacks import flip_labels


@lru_cache(maxsize=8)
def shared_model(config: ModelConfig, input_shape: tuple[int, ...], num_classes: int,
                 device: torch.device, dtype: torch.dtype) -> nn.Module:
    """One module per process, architecture and dtype: agents hold their parameters as
    tensor lists and evaluate the module at them."""
    return build_model(config, input_shape, num_classes, 0).to(device=device, dtype=dtype)


Pair = tuple[torch.Tensor, torch.Tensor]  # features and labels


@dataclass(frozen=True)
class AgentData:
    """Agent j's share of the data set, on the CPU: its partition of the training set,
    the samples it measures training loss on when they are not its own (`common`: the
    seeded subset of the whole training set every agent shares, under
    `training.train_evaluation: common`; None under `own`), the test samples it
    evaluates on (the seeded `training.eval_samples` subset, or all) and the data set's
    shape. Everything a node needs of the data set, so that a node can keep it
    (`data_cache`) instead of loading and splitting the whole set again."""

    features: torch.Tensor
    labels: torch.Tensor
    common: Pair | None
    test: Pair
    input_shape: tuple[int, ...]
    num_classes: int

    @classmethod
    def prepare(cls, plan: MethodPlan, agent: int) -> AgentData:
        """Agent `agent`'s share, taken from the data set."""
        dataset = plan.dataset
        own = torch.as_tensor(plan.partitions[agent])
        limit = plan.scenario.training.eval_samples
        common = evaluation_subset(dataset.train_x, dataset.train_y, limit, plan.seed) \
            if plan.scenario.training.train_evaluation == "common" else None
        return cls(features=dataset.train_x[own], labels=dataset.train_y[own], common=common,
                   test=evaluation_subset(dataset.test_x, dataset.test_y, limit, plan.seed),
                   input_shape=dataset.input_shape, num_classes=dataset.num_classes)


@dataclass(frozen=True)
class AgentSetup:
    """What agent `agent` needs to train under `plan`."""

    plan: MethodPlan
    agent: int
    model: nn.Module
    device: torch.device
    features: torch.Tensor
    labels: torch.Tensor
    train_evaluation: tuple[torch.Tensor, torch.Tensor]
    test_evaluation: tuple[torch.Tensor, torch.Tensor]
    classes: int
    poisoned_from: int | None  # label flipping: the first step whose labels it flips

    @classmethod
    def build(cls, plan: MethodPlan, agent: int, data: AgentData | None = None) -> AgentSetup:
        """Agent `agent` on the scenario's device with its seeded evaluation subsets, from
        its share of the data (by default taken from the data set here), its features in
        the run's dtype."""
        device = select_device(plan.scenario.resources.device)

        def on_device(pair: Pair) -> Pair:
            return pair[0].to(device, plan.dtype), pair[1].to(device)

        data = data or AgentData.prepare(plan, agent)
        features, labels = on_device((data.features, data.labels))
        own = evaluation_subset(features, labels, plan.scenario.training.eval_samples, plan.seed)
        return cls(
            plan=plan, agent=agent, device=device, features=features, labels=labels,
            model=shared_model(plan.scenario.model, data.input_shape, data.num_classes, device,
                               plan.dtype),
            train_evaluation=own if data.common is None else on_device(data.common),
            test_evaluation=on_device(data.test),
            classes=data.num_classes, poisoned_from=plan.poisoned_from(agent, len(labels)),
        )

    def minibatch_index(self, step: int) -> torch.Tensor:
        """Positions in this agent's data of its `step`-th minibatch."""
        index = minibatch_indices(len(self.labels), self.plan.batch_size, self.plan.seed,
                                  self.agent, step)
        return torch.as_tensor(index, device=self.device)

    def minibatch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The minibatch of this agent's `step`-th SGD step (augmented when asked; its
        labels flipped when the agent is a label-flipping attacker, from its first
        poisoned step)."""
        index = self.minibatch_index(step)
        features = self.features[index]
        if self.plan.scenario.dataset.augment:
            features = augment(features, self.plan.seed, self.agent, step)
        labels = self.labels[index]
        if self.poisoned_from is not None and step >= self.poisoned_from:
            labels = flip_labels(labels, self.classes)
        return features, labels

    def gradient_at(self, parameters: list[torch.Tensor], step: int,
                    ) -> tuple[list[torch.Tensor], float]:
        """g_j at `parameters` on the minibatch of `step` (weight decay included), and the
        minibatch loss. Dropout draws its masks from a generator seeded by (seed, agent,
        step), so a run repeats exactly."""
        if self.plan.scenario.model.dropout:
            torch.manual_seed(step_seed(self.plan.seed, self.agent, step))
        grads, loss, _ = gradient(self.model, parameters, *self.minibatch(step),
                                  weight_decay=self.plan.weight_decay)
        return grads, loss

    def evaluate(self, parameters: list[torch.Tensor]) -> dict[str, float]:
        """Loss and accuracy on training data (a common subset of the whole training set,
        or the agent's own partition: `training.train_evaluation`) and on the test set
        (each the seeded `eval_samples` subset when set)."""
        train_loss, train_accuracy = evaluate(self.model, parameters, *self.train_evaluation)
        test_loss, test_accuracy = evaluate(self.model, parameters, *self.test_evaluation)
        return {"train_loss": train_loss, "train_accuracy": train_accuracy,
                "test_loss": test_loss, "test_accuracy": test_accuracy}
