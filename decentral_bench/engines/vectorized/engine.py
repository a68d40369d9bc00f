"""The vectorized engine: every agent of a method as one batched PyTorch program.

All N agents' parameters live in one tensor per model parameter (agents along
the first dimension). A gossip round is the same `strategies.gossip.gossip_round`
the ClientApp runs, applied to the whole stack: the mixing sum is Π_k applied to
the stack of published points (`Mixer`), the gradients are one `torch.func`
call for every agent (`StackedModel`). FedAvg runs every sampled agent's local
epochs at once, then the example-weighted average Flower's FedAvg computes.

Same x_0, minibatch streams, step sizes, Π_k and failures as the Flower engine,
so both end with the same parameters (tested to 1e-5). It simulates the
algorithm on one machine; the Flower engine is the reference and the path to
real deployments.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
import torch

from decentral_bench.engines.base import (
    EventSink,
    FinalParameters,
    ReportSink,
    RoundClock,
    RoundReport,
)
from decentral_bench.engines.vectorized.batches import AgentBatches
from decentral_bench.engines.vectorized.functional import EVAL_BATCH, StackedModel
from decentral_bench.engines.vectorized.memory import agents_per_call, keep_freed_memory
from decentral_bench.engines.vectorized.mixing import Mixer
from decentral_bench.experiment.data import steps_per_epoch
from decentral_bench.experiment.metrics import consensus_distance
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.experiment.training import available_cpus, select_device, step_seed
from decentral_bench.network.traffic import gossip_round_bytes, parameter_bytes
from strategies.consensus_control import control_round
from strategies.gossip import GossipState, UpdateRule, gossip_round

Stack = list[torch.Tensor]


def keep_rows(keep: torch.Tensor, new: Stack, old: Stack) -> Stack:
    """`new` with the rows of the agents marked in `keep` taken from `old`."""
    return [torch.where(keep.view(-1, *[1] * (n.dim() - 1)), o, n)
            for n, o in zip(new, old, strict=True)]


class VectorizedEngine:
    """Runs a method as one batched program (see the module docstring).

    `chunk` caps the agents per batched call (default: what fits in free memory);
    `dense` forces a dense (True) or sparse (False) mixing product.
    """

    name = "vectorized"

    def __init__(self, chunk: int | None = None, dense: bool | None = None) -> None:
        self.chunk = chunk
        self.dense = dense

    def run(self, plan: MethodPlan, report: ReportSink, on_event: EventSink) -> FinalParameters:
        keep_freed_memory()
        threads = torch.get_num_threads()
        torch.set_num_threads(available_cpus())
        try:
            stacked = _StackedRun(plan, self.chunk, self.dense, report)
            if plan.is_gossip:
                return stacked.gossip()
            return stacked.fedavg(on_event)
        finally:
            torch.set_num_threads(threads)


def squared_norms(vectors: Stack) -> torch.Tensor:
    """||v_j||² of every agent's parameter list (float32 per parameter, summed in float64,
    as the ClientApp sums them)."""
    agents = vectors[0].shape[0]
    return sum((torch.linalg.vector_norm(v.reshape(agents, -1), dim=1) ** 2).to(torch.float64)
               for v in vectors)


class _Exchanges:
    """A round's gossip-only exchanges (consensus control) on the stack."""

    def __init__(self, run: _StackedRun, rule: UpdateRule, mixer: Mixer, alive: list[int],
                 state: GossipState, published: Stack) -> None:
        self.run, self.rule, self.mixer, self.alive = run, rule, mixer, alive
        self.rows = torch.as_tensor(alive, device=run.device)
        self.everyone = len(alive) == run.plan.agents
        self.state, self.published = state, published

    def alive_points(self) -> Stack:
        return self.published if self.everyone else [p[self.rows] for p in self.published]

    def exchange(self, exact: bool) -> float:
        """One exchange over the round's network (exact: every alive agent gets x̄); each
        agent's state moves with its point. Returns Ξ² after it."""
        if exact:
            mixed = [p.clone() for p in self.published]
            for m, p in zip(mixed, self.published, strict=True):
                m[self.rows] = p[self.rows].mean(dim=0, keepdim=True)
        else:
            mixed = self.mixer(self.published)
        delta = [m - p for m, p in zip(mixed, self.published, strict=True)]
        self.state = self.rule.translate(self.state, delta)
        self.published = mixed
        return consensus_distance(self.alive_points())


class _StackedRun:
    """One method's run: the data, the batched model and the stacks on the device."""

    def __init__(self, plan: MethodPlan, chunk: int | None, dense: bool | None,
                 report: ReportSink) -> None:
        self.plan = plan
        self.report = report
        self.dense = dense
        self.device = select_device(plan.scenario.resources.device)
        self.batches = AgentBatches(plan, self.device)
        model = plan.build_model().to(self.device)
        sample = self.batches.train_x[0]
        self.chunk = chunk or agents_per_call(model, sample, plan.batch_size, plan.agents,
                                              self.device)
        self.eval_chunk = chunk or agents_per_call(model, sample, EVAL_BATCH, plan.agents,
                                                   self.device, training=False)
        self.model = StackedModel(model, self.chunk)
        self.initial = [torch.from_numpy(array).to(self.device)
                        for array in plan.initial_parameters]
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
        """Each of `agents` at its point and its step's minibatch: gradients and losses.
        Dropout masks are drawn from a generator seeded by (seed, step): a run repeats
        exactly (though the Flower engine's agents draw other masks)."""
        if self.plan.scenario.model.dropout:
            torch.manual_seed(step_seed(self.plan.seed, *steps[:1]))
        features, labels, weights = self.batches.minibatches(agents, steps)
        return self.model.gradients(points, features, labels, weights,
                                    self.plan.weight_decay)

    def every_agents_gradient(self, norms: list[torch.Tensor], points: Stack,
                              step: int) -> tuple[Stack, torch.Tensor]:
        """Every agent's gradient at its point on its `step`-th minibatch; the squared
        gradient norms are appended to `norms`."""
        agents = self.plan.agents
        grads, losses = self.gradient_at(list(range(agents)), [step] * agents, points)
        norms.append(squared_norms(grads))
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

    # ------------------------------------------------------------ gossip

    def gossip(self) -> FinalParameters:
        plan, rule, agents = self.plan, self.plan.update_rule, self.plan.agents
        schedule = plan.failure_schedule
        static = Mixer(plan.topology.mixing_matrix, self.device, self.dense)
        everyone = list(range(agents))
        published = self.stack(agents)
        state = rule.restore(published, None)
        self.clock.restart()
        for server_round in range(1, plan.rounds + 1):
            matrix, alive, mixer, network = plan.topology.mixing_matrix, everyone, static, None
            if schedule.changes_network:
                network = schedule.network(server_round)
                matrix, alive = network.mixing_matrix, sorted(network.alive)
                mixer = Mixer(matrix, self.device, self.dense)
            norms: list[torch.Tensor] = []
            gradient_at = partial(self.every_agents_gradient, norms)
            before = state, published
            state, losses = gossip_round(rule, state, published, mixer(published), gradient_at,
                                         plan.lr_at(server_round),
                                         (server_round - 1) * plan.local_steps,
                                         plan.local_steps)
            published = rule.published_point(state)
            if len(alive) < agents:  # agents that are down neither step nor publish
                down = torch.ones(agents, dtype=torch.bool, device=self.device)
                down[alive] = False
                state = GossipState(keep_rows(down, state.current, before[0].current),
                                    keep_rows(down, state.memory, before[0].memory))
                published = keep_rows(down, published, before[1])
            exchanges = _Exchanges(self, rule, mixer, alive, state, published)
            outcome = None
            if plan.consensus_control is not None:
                outcome = control_round(plan.consensus_control, plan.phase(server_round),
                                        consensus_distance(exchanges.alive_points()),
                                        exchanges.exchange)
                state, published = exchanges.state, exchanges.published
            reporting = exchanges.alive_points()
            wall_time = self.lap()
            columns = {"minibatch_loss": torch.stack(losses).to(torch.float64).mean(dim=0),
                       "grad_norm_sq": torch.stack(norms).mean(dim=0)}
            figures = {} if network is None else \
                {**network.metrics(), "round_lambda2": network.lambda2}
            moved, routed = gossip_round_bytes(matrix, alive, self.point_bytes, outcome)
            self.finish(RoundReport(
                server_round=server_round, agents=alive, points=reporting,
                agent_metrics=self.agent_metrics(alive, reporting, columns, server_round),
                bytes_moved=moved, router_bytes=routed, network=figures, control=outcome,
                wall_time_s=wall_time))
        return {agent: [p[agent].cpu().numpy() for p in published] for agent in everyone}

    # ------------------------------------------------------------ FedAvg

    def local_epochs(self, agents: list[int], start: Stack,
                     server_round: int) -> tuple[Stack, torch.Tensor]:
        """Each agent's `local_epochs` epochs of SGD from its row of `start` (agents with
        less data take fewer steps). Returns the models and each agent's mean loss."""
        plan = self.plan
        steps = np.array([plan.local_epochs * steps_per_epoch(int(self.batches.sizes[agent]),
                                                              plan.batch_size)
                          for agent in agents])
        lr = plan.lr_at(server_round)
        parameters = [p.clone() for p in start]
        loss_sum = torch.zeros(len(agents), dtype=torch.float64, device=self.device)
        for step in range(int(steps.max())):
            active = np.flatnonzero(step < steps)
            numbers = [(server_round - 1) * int(steps[i]) + step for i in active]
            if len(active) == len(agents):
                grads, losses = self.gradient_at(agents, numbers, parameters)
                parameters = [p - lr * g for p, g in zip(parameters, grads, strict=True)]
            else:
                rows = torch.as_tensor(active, device=self.device)
                grads, losses = self.gradient_at([agents[i] for i in active], numbers,
                                                 [p[rows] for p in parameters])
                for p, g in zip(parameters, grads, strict=True):
                    p[rows] = p[rows] - lr * g
            loss_sum[torch.as_tensor(active, device=self.device)] += losses.to(torch.float64)
        counts = torch.as_tensor(steps, dtype=torch.float64, device=self.device)
        return parameters, loss_sum / counts

    def fedavg(self, on_event: EventSink) -> FinalParameters:
        plan, agents = self.plan, self.plan.agents
        schedule = plan.failure_schedule
        server = plan.scenario.failures.server
        server_rounds = plan.rounds if server is None else server.round
        sampler = np.random.default_rng([plan.seed, 6])
        global_model = list(self.initial)
        own = self.stack(agents)  # each agent's last model, for training once the server is lost
        weights = torch.as_tensor(self.batches.sizes, dtype=torch.float32, device=self.device)

        def alive_figures(server_round: int) -> dict[str, float]:
            return {"alive_agents": float(agents - len(schedule.crashed(server_round)))} \
                if plan.scenario.failures.agents else {}

        self.clock.restart()
        for server_round in range(1, server_rounds + 1):
            alive = [j for j in range(agents) if j not in schedule.crashed(server_round)]
            count = max(int(len(alive) * plan.fraction), 1)
            sampled = alive if count >= len(alive) else \
                sorted(int(j) for j in sampler.choice(alive, count, replace=False))
            rows = torch.as_tensor(sampled, device=self.device)
            start = [p.unsqueeze(0).repeat(len(sampled), *[1] * p.dim()) for p in global_model]
            trained, losses = self.local_epochs(sampled, start, server_round)
            for stored, new in zip(own, trained, strict=True):
                stored[rows] = new
            share = weights[rows] / weights[rows].sum()
            global_model = [(share.view(-1, *[1] * (p.dim() - 1)) * p).sum(dim=0)
                            for p in trained]
            wall_time = self.lap()
            moved = 2 * len(sampled) * self.point_bytes
            self.finish(RoundReport(
                server_round=server_round, agents=sampled, points=trained,
                agent_metrics=self.agent_metrics(sampled, trained, {"minibatch_loss": losses},
                                                 server_round),
                bytes_moved=moved, router_bytes=moved, average=global_model,
                network={"aggregated": 1.0, **alive_figures(server_round)},
                wall_time_s=wall_time))
        if server is None or server_rounds == plan.rounds:
            return {0: [p.cpu().numpy() for p in global_model]}
        on_event(server_rounds, f"the server failed after round {server_rounds} "
                                f"(mode {server.mode})")
        if server.mode == "halt":
            return {0: [p.cpu().numpy() for p in global_model]}
        for server_round in range(server_rounds + 1, plan.rounds + 1):
            alive = [j for j in range(agents) if j not in schedule.crashed(server_round)]
            rows = torch.as_tensor(alive, device=self.device)
            trained, losses = self.local_epochs(alive, [p[rows] for p in own], server_round)
            for stored, new in zip(own, trained, strict=True):
                stored[rows] = new
            wall_time = self.lap()
            self.finish(RoundReport(
                server_round=server_round, agents=alive, points=trained,
                agent_metrics=self.agent_metrics(alive, trained, {"minibatch_loss": losses},
                                                 server_round),
                network={"aggregated": 0.0, **alive_figures(server_round)},
                wall_time_s=wall_time))
        return {agent: [p[agent].cpu().numpy() for p in own] for agent in range(agents)}
