"""The model as a function of stacked parameters: every agent's gradient, loss and
evaluation in one batched call (`torch.func`: `functional_call`, `grad_and_value`, `vmap`).

Parameters are lists of tensors in `model.parameters()` order, each with the
agents along the first dimension. Gradients equal, per agent, what
`decentral_bench.experiment.training.gradient` computes for that agent alone; evaluation
equals `decentral_bench.experiment.training.evaluate` (the same batches of `EVAL_BATCH`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap
from torch.nn import functional

EVAL_BATCH = 2048  # samples per evaluation batch, as `training.evaluate`


class StackedModel:
    """`model` evaluated at every agent's parameters at once, `chunk` agents per call."""

    def __init__(self, model: nn.Module, chunk: int) -> None:
        self.model = model
        self.names = [name for name, _ in model.named_parameters()]
        self.chunk = max(1, chunk)
        self._mean_gradients = vmap(grad_and_value(self._mean_loss), randomness="different",
                                    chunk_size=self.chunk)
        self._masked_gradients = vmap(grad_and_value(self._masked_loss),
                                      randomness="different", chunk_size=self.chunk)

    def _logits(self, parameters: Sequence[torch.Tensor], features: torch.Tensor,
                ) -> torch.Tensor:
        return functional_call(self.model, dict(zip(self.names, parameters, strict=True)),
                               (features,))

    def _mean_loss(self, parameters: tuple[torch.Tensor, ...], features: torch.Tensor,
                   labels: torch.Tensor) -> torch.Tensor:
        """The agent's minibatch loss, the mean cross-entropy (as `training.gradient`)."""
        return functional.cross_entropy(self._logits(parameters, features), labels)

    def _masked_loss(self, parameters: tuple[torch.Tensor, ...], features: torch.Tensor,
                     labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The mean cross-entropy over an agent's real samples of a padded batch
        (`weights` is 1/|batch| on them, 0 on padding)."""
        losses = functional.cross_entropy(self._logits(parameters, features), labels,
                                          reduction="none")
        return (losses * weights).sum()

    def gradients(self, parameters: Sequence[torch.Tensor], features: torch.Tensor,
                  labels: torch.Tensor, weights: torch.Tensor | None = None,
                  weight_decay: float = 0.0) -> tuple[list[torch.Tensor], torch.Tensor]:
        """g_j(x_j) for every agent j on its own minibatch (features N×B×..., labels N×B),
        plus λx_j, and the minibatch losses (N). `weights` (N×B) masks padded samples;
        without it every sample of a batch counts 1/B."""
        self.model.train()
        if weights is None:
            grads, losses = self._mean_gradients(tuple(parameters), features, labels)
        else:
            grads, losses = self._masked_gradients(tuple(parameters), features, labels, weights)
        grads = list(grads)
        if weight_decay:
            grads = [g + weight_decay * x for g, x in zip(grads, parameters, strict=True)]
        return grads, losses.detach()

    @torch.no_grad()
    def evaluate_shared(self, parameters: Sequence[torch.Tensor], features: torch.Tensor,
                        labels: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean loss and accuracy of every agent on one labelled set (M samples), as float64
        tensors of N values; `chunk` agents at a time."""
        agents = parameters[0].shape[0]
        loss, correct = self._zeros(parameters), self._zeros(parameters)
        self.model.eval()
        for start in range(0, len(labels), EVAL_BATCH):
            batch = slice(start, start + EVAL_BATCH)
            for first in range(0, agents, chunk):
                rows = slice(first, first + chunk)
                logits = vmap(self._logits, in_dims=(0, None))(
                    [p[rows] for p in parameters], features[batch])
                target = labels[batch].expand(logits.shape[0], -1)
                self._accumulate(loss, correct, rows, logits, target, None)
        return loss / len(labels), correct / len(labels)

    @torch.no_grad()
    def evaluate_own(self, parameters: Sequence[torch.Tensor], features: torch.Tensor,
                     labels: torch.Tensor, index: torch.Tensor, valid: torch.Tensor,
                     chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean loss and accuracy of every agent j on its own samples `features[index[j]]`
        (the real ones marked in `valid`), as float64 tensors of N values."""
        agents = parameters[0].shape[0]
        loss, correct = self._zeros(parameters), self._zeros(parameters)
        self.model.eval()
        for start in range(0, index.shape[1], EVAL_BATCH):
            batch = slice(start, start + EVAL_BATCH)
            for first in range(0, agents, chunk):
                rows = slice(first, first + chunk)
                where = index[rows, batch]
                logits = vmap(self._logits)([p[rows] for p in parameters], features[where])
                self._accumulate(loss, correct, rows, logits, labels[where], valid[rows, batch])
        counts = valid.sum(dim=1).to(torch.float64)
        return loss / counts, correct / counts

    @staticmethod
    def _zeros(parameters: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.zeros(parameters[0].shape[0], dtype=torch.float64,
                           device=parameters[0].device)

    @staticmethod
    def _accumulate(loss: torch.Tensor, correct: torch.Tensor, rows: slice,
                    logits: torch.Tensor, target: torch.Tensor,
                    valid: torch.Tensor | None) -> None:
        """Add a batch's summed loss (float32 per batch, as `training.evaluate`) and hits."""
        losses = functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
        hits = logits.argmax(dim=2) == target
        if valid is not None:
            losses, hits = losses * valid, hits & valid
        loss[rows] += losses.sum(dim=1).to(torch.float64)
        correct[rows] += hits.sum(dim=1).to(torch.float64)
