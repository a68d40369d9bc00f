"""The model as a function of stacked parameters: a block of agents' gradients, losses and
evaluations, batched in one call (`torch.func`: `functional_call`, `grad_and_value`,
`vmap`) or agent after agent (`batched = False`).

Parameters are lists of tensors in `model.parameters()` order, each with the
agents along the first dimension. Gradients equal, per agent, what
`decentral_bench.experiment.training.gradient` computes for that agent alone (agent
after agent they are the same operations, bit for bit); evaluation equals
`decentral_bench.experiment.training.evaluate` (the same batches of `EVAL_BATCH`).

The batched call turns each layer into its batched form: a linear layer becomes one
batched matrix product, a convolution a grouped convolution with one group per agent,
which some devices run well (GPUs) and others slower than one convolution per agent
(a 2-core CPU); `StackedRun` picks (see `stack.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap
from torch.nn import functional

from decentral_bench.engines.vectorized.batches import Minibatches

EVAL_BATCH = 2048  # samples per evaluation batch, as `training.evaluate`


class StackedModel:
    """`model` evaluated at a block of agents' parameters: batched, or agent by agent."""

    def __init__(self, model: nn.Module, batched: bool = True) -> None:
        self.model = model
        self.batched = batched
        self.names = [name for name, _ in model.named_parameters()]
        self._mean_gradients = vmap(grad_and_value(self._mean_loss), randomness="different")
        self._masked_gradients = vmap(grad_and_value(self._masked_loss),
                                      randomness="different")

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

    def gradients(self, parameters: Sequence[torch.Tensor], batches: Minibatches,
                  weight_decay: float = 0.0, seeds: Sequence[int] | None = None,
                  ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """g_j(x_j) for every agent j of the block on its own minibatch, plus λx_j, and the
        minibatch losses (one per agent). Where `seeds` are given (dropout), agent by agent
        agent j draws its masks after `torch.manual_seed(seeds[j])`, as its ClientApp
        does; batched, the block draws every agent's masks after `seeds[0]`."""
        self.model.train()
        if self.batched:
            if seeds is not None:
                torch.manual_seed(seeds[0])
            arguments = (tuple(parameters), batches.features, batches.labels)
            if batches.weights is None:
                grads, losses = self._mean_gradients(*arguments)
            else:
                grads, losses = self._masked_gradients(*arguments, batches.weights)
            grads, losses = list(grads), losses.detach()
        else:
            grads, losses = self._gradients_one_by_one(parameters, batches, seeds)
        if weight_decay:  # in place, with the same roundings as g + λx
            for g, x in zip(grads, parameters, strict=True):
                g.add_(weight_decay * x)
        return grads, losses

    def _gradients_one_by_one(self, parameters: Sequence[torch.Tensor], batches: Minibatches,
                              seeds: Sequence[int] | None,
                              ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Each agent's gradient by one forward and backward pass of the model at its row of
        the stack on its real samples, written into the block's gradient stack."""
        grads = [torch.empty_like(p) for p in parameters]
        losses = torch.empty(len(batches.lengths), dtype=parameters[0].dtype,
                             device=parameters[0].device)
        for row, length in enumerate(batches.lengths):
            if seeds is not None:
                torch.manual_seed(seeds[row])
            leaves = [p[row].detach().requires_grad_() for p in parameters]
            loss = functional.cross_entropy(
                self._logits(leaves, batches.features[row, :length]),
                batches.labels[row, :length])
            for stacked, gradient in zip(grads, torch.autograd.grad(loss, leaves),
                                         strict=True):
                stacked[row] = gradient
            losses[row] = loss.detach()
        return grads, losses

    def _block_logits(self, parameters: Sequence[torch.Tensor], features: torch.Tensor,
                      shared: bool) -> torch.Tensor:
        """Logits of every agent of the block: on one set of `features` (`shared`) or each
        on its own row of them."""
        if self.batched:
            return vmap(self._logits, in_dims=(0, None if shared else 0))(
                list(parameters), features)
        return torch.stack([self._logits([p[row] for p in parameters],
                                         features if shared else features[row])
                            for row in range(parameters[0].shape[0])])

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
                logits = self._block_logits([p[rows] for p in parameters], features[batch],
                                            shared=True)
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
                logits = self._block_logits([p[rows] for p in parameters], features[where],
                                            shared=False)
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
