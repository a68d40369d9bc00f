"""A server method on the stack: every sampled agent's local epochs at once (with FedProx's
proximal term where the method has one), then the server update Flower's stock strategy
computes (`strategies.server_rules`, the registry's pure function for it); after a server
loss (mode `local`) each agent goes on training alone from its own last model. A sampled
attacker sends what its attack makes of the global model and its trained model
(`strategies.attacks.server_attack`), as its ClientApp does.
"""

from __future__ import annotations

import numpy as np
import torch

from decentral_bench.engines.base import EventSink, FinalParameters, RoundReport
from decentral_bench.engines.vectorized.stack import Stack, StackedRun
from decentral_bench.experiment.data import steps_per_epoch
from strategies.attacks import server_attack
from strategies.local_sgd import proximal_gradient
from strategies.server_rules import Replies, ServerState


class ServerLoop:
    """Every round of a server method on the stack (see the module docstring)."""

    def __init__(self, run: StackedRun) -> None:
        self.run = run
        self.plan = run.plan
        self.update = run.plan.definition.server_rule(run.plan.options)

    def local_epochs(self, agents: list[int], start: Stack, server_round: int,
                     proximal_mu: float = 0.0) -> tuple[Stack, torch.Tensor]:
        """Each agent's `local_epochs` epochs of SGD from its row of `start`, with the
        proximal term μ/2 ||x − start||² (agents with less data take fewer steps). Returns
        the models and each agent's mean loss."""
        plan, run = self.plan, self.run
        steps = np.array([plan.local_epochs * steps_per_epoch(int(run.batches.sizes[agent]),
                                                              plan.batch_size)
                          for agent in agents])
        lr = plan.lr_at(server_round)
        parameters = [p.clone() for p in start]
        loss_sum = torch.zeros(len(agents), dtype=torch.float64, device=run.device)
        for step in range(int(steps.max())):
            active = np.flatnonzero(step < steps)
            numbers = [(server_round - 1) * int(steps[i]) + step for i in active]
            if len(active) == len(agents):
                grads, losses = run.gradient_at(agents, numbers, parameters)
                grads = proximal_gradient(grads, parameters, start, proximal_mu)
                parameters = [p - lr * g for p, g in zip(parameters, grads, strict=True)]
            else:
                rows = torch.as_tensor(active, device=run.device)
                grads, losses = run.gradient_at([agents[i] for i in active], numbers,
                                                [p[rows] for p in parameters])
                grads = proximal_gradient(grads, [p[rows] for p in parameters],
                                          [s[rows] for s in start], proximal_mu)
                for p, g in zip(parameters, grads, strict=True):
                    p[rows] = p[rows] - lr * g
            loss_sum[torch.as_tensor(active, device=run.device)] += losses.to(torch.float64)
        counts = torch.as_tensor(steps, dtype=torch.float64, device=run.device)
        return parameters, loss_sum / counts

    def attacked(self, sampled: list[int], global_model: Stack, trained: Stack,
                 server_round: int) -> Stack:
        """The models the sampled clients send: the trained ones, with each attacker's row
        replaced by its attack once the attack is on."""
        adversaries = self.plan.adversaries
        if adversaries is None or not adversaries.active(server_round):
            return trained
        positions = [i for i, agent in enumerate(sampled) if agent in adversaries.attackers]
        if not positions:
            return trained
        rows = torch.as_tensor(positions, device=self.run.device)
        own = [t[rows] for t in trained]
        noise = adversaries.attack.noise(own, self.plan.seed, [sampled[i] for i in positions],
                                         server_round)
        start = [g.unsqueeze(0).expand_as(o) for g, o in zip(global_model, own, strict=True)]
        sent = [t.clone() for t in trained]
        for s, a in zip(sent, server_attack(adversaries.attack, start, own, noise), strict=True):
            s[rows] = a
        return sent

    def alive_figures(self, server_round: int) -> dict[str, float]:
        """The round's alive agents, when the scenario crashes some."""
        if not self.plan.scenario.failures.agents:
            return {}
        return {"alive_agents": float(len(self.plan.failure_schedule.alive(server_round)))}

    def run_rounds(self, on_event: EventSink) -> FinalParameters:
        plan, run, agents = self.plan, self.run, self.plan.agents
        schedule = plan.failure_schedule
        server = plan.scenario.failures.server
        server_rounds = plan.rounds if server is None else server.round
        sampler = np.random.default_rng([plan.seed, 6])
        global_model = list(run.initial)
        own = run.stack(agents)  # each agent's last model, for training once the server is lost
        examples = torch.as_tensor(run.batches.sizes, dtype=plan.dtype, device=run.device)
        proximal_mu = float(plan.options.get("proximal_mu", 0.0))
        server_state: ServerState = {}
        sizes = np.full(agents, run.point_bytes)  # every agent's upload: the model
        run.clock.restart()
        for server_round in range(1, server_rounds + 1):
            alive = sorted(schedule.alive(server_round))
            count = max(int(len(alive) * plan.fraction), 1)
            sampled = alive if count >= len(alive) else \
                sorted(int(j) for j in sampler.choice(alive, count, replace=False))
            rows = torch.as_tensor(sampled, device=run.device)
            start = [p.unsqueeze(0).repeat(len(sampled), *[1] * p.dim()) for p in global_model]
            trained, losses = self.local_epochs(sampled, start, server_round, proximal_mu)
            for stored, new in zip(own, trained, strict=True):
                stored[rows] = new
            trained = self.attacked(sampled, global_model, trained, server_round)
            updated, server_state = self.update(server_round, global_model,
                                                Replies(trained, examples[rows]), server_state)
            aggregated = updated is not None
            global_model = updated if updated is not None else global_model
            wall_time = run.lap()
            moved = 2 * len(sampled) * run.point_bytes
            run.finish(RoundReport(
                server_round=server_round, agents=sampled, points=trained,
                agent_metrics=run.agent_metrics(sampled, trained, {"minibatch_loss": losses},
                                                server_round),
                bytes_moved=moved, router_bytes=moved,
                average=global_model if aggregated else None,
                network={"aggregated": 1.0, **self.alive_figures(server_round)},
                wall_time_s=wall_time, message_bytes=sizes))
        if server is None or server_rounds == plan.rounds:
            return {0: [p.cpu().numpy() for p in global_model]}
        on_event(server_rounds, f"the server failed after round {server_rounds} "
                                f"(mode {server.mode})")
        if server.mode == "halt":
            return {0: [p.cpu().numpy() for p in global_model]}
        for server_round in range(server_rounds + 1, plan.rounds + 1):
            alive = sorted(schedule.alive(server_round))
            rows = torch.as_tensor(alive, device=run.device)
            trained, losses = self.local_epochs(alive, [p[rows] for p in own], server_round)
            for stored, new in zip(own, trained, strict=True):
                stored[rows] = new
            wall_time = run.lap()
            run.finish(RoundReport(
                server_round=server_round, agents=alive, points=trained,
                agent_metrics=run.agent_metrics(alive, trained, {"minibatch_loss": losses},
                                                server_round),
                network={"aggregated": 0.0, **self.alive_figures(server_round)},
                wall_time_s=wall_time, message_bytes=sizes))
        return {agent: [p[agent].cpu().numpy() for p in own] for agent in range(agents)}
