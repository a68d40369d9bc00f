"""One method's run on the vectorized engine: the data, the batched model and the stacks on
the device, the agents' gradients and evaluation block by block, and the round's report.

The gossip loop (`gossip.py`, by way of `blocks.py`) and the server methods (`server.py`)
build on it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from decentral_bench.engines.base import EventSink, ReportSink, RoundClock, RoundReport
from decentral_bench.engines.vectorized.batches import AgentBatches
from decentral_bench.engines.vectorized.batching import choose_batched
from decentral_bench.engines.vectorized.functional import EVAL_BATCH, StackedModel
from decentral_bench.engines.vectorized.memory import agents_per_call, chunk_memory_bytes
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.experiment.training import select_device, step_seed
from decentral_bench.network.traffic import parameter_bytes

Stack = list[torch.Tensor]


def squared_norms(vectors: Stack) -> torch.Tensor:
    """||v_j||² of every agent's parameter list (float32 per parameter, summed in float64,
    as the ClientApp sums them)."""
    agents = vectors[0].shape[0]
    return sum((torch.linalg.vector_norm(v.reshape(agents, -1), dim=1) ** 2).to(torch.float64)
               for v in vectors)


def row_blocks(agents: int, size: int) -> list[slice]:
    """Agents 0..agents − 1 in consecutive blocks of `size` (the last one may be shorter)."""
    return [slice(first, min(first + size, agents)) for first in range(0, agents, size)]


class StackedRun:
    """A method's run: data and model on the device, `chunk` agents per block, `dense`
    forcing a dense (True) or sparse (False) mixing product, `batched` the batched (True)
    or the agent-by-agent (False) gradients (None: `resources.batched`)."""

    def __init__(self, plan: MethodPlan, chunk: int | None, dense: bool | None,
                 batched: bool | None, report: ReportSink, on_event: EventSink) -> None:
        self.plan = plan
        self.report = report
        self.dense = dense
        self.device = select_device(plan.scenario.resources.device)
        self.batches = AgentBatches(plan, self.device)
        model = plan.build_model().to(self.device)
        sample = self.batches.train_x[0]
        memory = chunk_memory_bytes(self.device, plan.scenario.training.deterministic)
        self.chunk = chunk or agents_per_call(model, sample, plan.batch_size, plan.agents,
                                              self.device, memory)
        self.blocks = row_blocks(plan.agents, self.chunk)
        self.eval_chunk = chunk or agents_per_call(model, sample, EVAL_BATCH, plan.agents,
                                                   self.device, memory, training=False)
        self.initial = [torch.from_numpy(array).to(self.device)
                        for array in plan.initial_parameters]
        self.model = StackedModel(model)
        setting = plan.scenario.resources.batched if batched is None else batched
        self.model.batched, choice = choose_batched(self.model, self.batches, self.initial,
                                                    setting, plan.scenario.training.deterministic)
        if choice:
            on_event(0, choice)
        self.point_bytes = parameter_bytes(plan.initial_parameters)
        self.common_training = plan.scenario.training.train_evaluation == "common"
        self.train_index, self.train_valid = self.batches.evaluation_sets()
        self.train_x, self.train_y = self.batches.common_training_set()
        self.test_x, self.test_y = self.batches.test_set()
        self.clock = RoundClock()

    def stack(self, agents: int) -> Stack:
        """x_0 for `agents` agents."""
        return [p.unsqueeze(0).repeat(agents, *[1] * p.dim()) for p in self.initial]

    def gradient_at(self, agents: Sequence[int], steps: Sequence[int],
                    points: Stack) -> tuple[Stack, torch.Tensor]:
        """Each of `agents` at its point (the rows of `points`) and its step's minibatch:
        gradients and losses, `chunk` agents per call. Dropout masks are drawn from
        generators seeded by (seed, agent, step) (`StackedModel.gradients`), so a run
        repeats exactly."""
        if len(agents) > self.chunk:
            return self._gradients_in_blocks(agents, steps, points)
        seeds = [step_seed(self.plan.seed, agent, step)
                 for agent, step in zip(agents, steps, strict=True)] \
            if self.plan.scenario.model.dropout else None
        return self.model.gradients(points, self.batches.minibatches(agents, steps),
                                    self.plan.weight_decay, seeds)

    def _gradients_in_blocks(self, agents: Sequence[int], steps: Sequence[int],
                             points: Stack) -> tuple[Stack, torch.Tensor]:
        """`gradient_at` for more agents than a call takes, written block by block into
        one stack."""
        grads = [torch.empty_like(p) for p in points]
        losses = torch.empty(len(agents), dtype=points[0].dtype, device=self.device)
        for block in row_blocks(len(agents), self.chunk):
            part, part_losses = self.gradient_at(agents[block], steps[block],
                                                 [p[block] for p in points])
            for stacked, gradient in zip(grads, part, strict=True):
                stacked[block] = gradient
            losses[block] = part_losses
        return grads, losses

    def agent_metrics(self, agents: list[int], points: Stack, columns: dict[str, torch.Tensor],
                      server_round: int) -> dict[int, dict[str, float]]:
        """What each agent reports: the round's `columns` (one value per agent of the
        stack: its mean minibatch loss, ...), and on evaluation rounds its loss and
        accuracy on training data (common or its own) and on the test set."""
        rows = torch.as_tensor(agents, device=self.device)
        columns = {key: column[rows] if len(column) != len(agents) else column
                   for key, column in columns.items()}
        if self.plan.evaluates(server_round):
            if self.common_training:
                columns["train_loss"], columns["train_accuracy"] = self.model.evaluate_shared(
                    points, self.train_x, self.train_y, self.eval_chunk)
            else:
                columns["train_loss"], columns["train_accuracy"] = self.model.evaluate_own(
                    points, self.batches.train_x, self.batches.train_y,
                    self.train_index[rows], self.train_valid[rows], self.eval_chunk)
            columns["test_loss"], columns["test_accuracy"] = self.model.evaluate_shared(
                points, self.test_x, self.test_y, self.eval_chunk)
        values = {key: column.tolist() for key, column in columns.items()}
        return {agent: {key: values[key][i] for key in values} for i, agent in enumerate(agents)}

    def lap(self) -> float:
        """The round's time so far, the device's queued work included."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return self.clock.lap()

    def finish(self, report: RoundReport) -> None:
        self.report(report)
        self.clock.restart()
