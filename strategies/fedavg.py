"""The server-based baseline: Flower's own FedAvg, computing exactly what it always does.

`ObservedFedAvg` subclasses `flwr.serverapp.strategy.FedAvg` only to add two
hooks at the documented extension points of a `Strategy`: `configure_train`
(before a round samples its nodes: only the round's sampled agents are shown then) and
`aggregate_train` (after the round's replies are averaged: the round is
measured then). The message keys are the project's protocol keys, passed
explicitly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from strategies.protocol import CONFIG_KEY, PUBLISHED_KEY, WEIGHT_KEY

BeforeRound = Callable[[int], None]
AfterRound = Callable[[int, list[Message], ArrayRecord | None], None]


class ObservedFedAvg(FedAvg):
    """Stock `FedAvg` training every client it is shown.

    `before_round` shows it the round's clients: the engine samples `fraction` of the
    alive agents (`MethodPlan.sampled_agents`, the draw the vectorized engine makes too)
    and hides the others, as it hides crashed agents, so Flower's own sampling
    (`fraction_train` 1) picks them all. Clients are only trained (no federated
    evaluation round): each reply already carries the client's metrics, and the global
    model is evaluated on the server. One available node suffices, so that a round whose
    other agents are hidden does not stall.
    """

    def __init__(self, before_round: BeforeRound, after_round: AfterRound) -> None:
        super().__init__(
            fraction_train=1.0,
            fraction_evaluate=0.0,
            min_train_nodes=1,
            min_evaluate_nodes=0,
            min_available_nodes=1,
            weighted_by_key=WEIGHT_KEY,
            arrayrecord_key=PUBLISHED_KEY,
            configrecord_key=CONFIG_KEY,
        )
        self.before_round = before_round
        self.after_round = after_round

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self.before_round(server_round)
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message],
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        arrays, metrics = super().aggregate_train(server_round, replies)
        self.after_round(server_round, replies, arrays)
        return arrays, metrics
