"""The server-based baselines: Flower's own strategies, computing exactly what they always do.

`stock_strategy` builds the class a registry entry names (`flwr.serverapp.strategy.FedAvg`,
`FedProx`, `FedAvgM`, `FedAdam`, `FedYogi`, `FedAdagrad`, `FedMedian`, `FedTrimmedAvg`,
`Krum`, `MultiKrum`, `Bulyan`) with the method's options as its keyword arguments and the
project's protocol keys, passed explicitly. `ObservedStrategy` wraps it to add two hooks
at the documented extension points of a `Strategy`: `configure_train` (before a round
samples its nodes: crashed agents are hidden then) and `aggregate_train` (after the
round's replies are aggregated: the round is measured then). Everything else is the
stock class's own.

One thing the wrapper does to the result: the global model keeps the dtype the round
started with. FedAdam's bias-corrected step is a NumPy float64 scalar, so its update
comes back in float64; the clients would then train a float64 model that no other method
trains. The wrapper casts it back (the same cast `strategies.server_rules.fedadam` makes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp import strategy as flower_strategies
from flwr.serverapp.strategy import Strategy

from strategies.protocol import CONFIG_KEY, PUBLISHED_KEY, WEIGHT_KEY
from strategies.registry import StockStrategy

BeforeRound = Callable[[int], None]
AfterRound = Callable[[int, list[Message], ArrayRecord | None], None]


def stock_strategy(stock: StockStrategy, options: Mapping[str, Any]) -> Strategy:
    """Flower's class `stock.flower_class`, sampling `fraction` of the connected clients per
    round and only training them (each reply already carries the client's metrics, and
    the global model is evaluated on the server). One available node suffices, so that
    crashed agents (hidden from the grid) do not stall a round."""
    strategy_class = getattr(flower_strategies, stock.flower_class)
    keywords = {word: options[key] for word, key in stock.keywords.items()}
    strategy: Strategy = strategy_class(
        fraction_train=float(options["fraction"]), fraction_evaluate=0.0, min_train_nodes=1,
        min_evaluate_nodes=0, min_available_nodes=1, weighted_by_key=WEIGHT_KEY,
        arrayrecord_key=PUBLISHED_KEY, configrecord_key=CONFIG_KEY, **keywords)
    return strategy


def _in_dtypes(arrays: ArrayRecord, like: ArrayRecord) -> ArrayRecord:
    """`arrays`, each in the dtype of its namesake in `like` (cast only where they differ)."""
    if all(arrays[key].dtype == like[key].dtype for key in arrays):
        return arrays
    return ArrayRecord({key: Array(np.asarray(array.numpy(), dtype=like[key].numpy().dtype))
                        for key, array in arrays.items()})


class ObservedStrategy(Strategy):
    """A stock strategy with the engine's two hooks (see the module docstring)."""

    def __init__(self, strategy: Strategy, before_round: BeforeRound,
                 after_round: AfterRound) -> None:
        self.strategy = strategy
        self.before_round = before_round
        self.after_round = after_round
        self.sent: ArrayRecord | None = None  # the global model the round started from

    def summary(self) -> None:
        self.strategy.summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self.before_round(server_round)
        self.sent = arrays
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message],
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        arrays, metrics = self.strategy.aggregate_train(server_round, replies)
        if arrays is not None and self.sent is not None:
            arrays = _in_dtypes(arrays, self.sent)
        self.after_round(server_round, replies, arrays)
        return arrays, metrics

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message],
                           ) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)
