"""Each server update the vectorized engine computes (`strategies.server_rules`) equals what
Flower's own class computes from the same replies, round after round (its state carried
over), on client models that include an outlier and, for the robust rules, ties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from inprocess import InProcessGrid

from strategies.protocol import METRICS_KEY, PUBLISHED_KEY, WEIGHT_KEY
from strategies.registry import METHODS
from strategies.server_rules import Replies, ServerState, squared_distances, trimmed_mean
from strategies.stock import ObservedStrategy, stock_strategy

CLIENTS, ROUNDS = 7, 3
SHAPES = [(4, 3), (3,)]
EXAMPLES = [30, 10, 25, 40, 5, 20, 15]

OPTIONS = {
    "fedavg": {}, "fedprox": {"proximal_mu": 0.1},
    "fedavgm": {"server_lr": 0.7, "server_momentum": 0.9},
    "fedadam": {"server_lr": 0.1, "beta_1": 0.9, "beta_2": 0.99, "tau": 1e-3},
    "fedyogi": {"server_lr": 0.01, "beta_1": 0.8, "beta_2": 0.95, "tau": 1e-2},
    "fedadagrad": {"server_lr": 0.1, "tau": 1e-3},
    "fedmedian": {}, "fedtrimmedavg": {"trim_fraction": 0.2},
    "krum": {"num_malicious_nodes": 1},
    "multikrum": {"num_malicious_nodes": 1, "num_nodes_to_select": 3},
    "bulyan": {"num_malicious_nodes": 1},
}


def _options(algorithm: str) -> dict:
    return {**METHODS[algorithm].options, "fraction": 1.0, **OPTIONS[algorithm]}


def client_models(server_round: int, global_model: list[np.ndarray]) -> list[list[np.ndarray]]:
    """Each client's model: the global model plus its own update; client 4 is an outlier."""
    rng = np.random.default_rng(server_round)
    models = [[g + rng.normal(scale=0.1, size=g.shape).astype(np.float32) for g in global_model]
              for _ in range(CLIENTS)]
    models[4] = [m + np.float32(5.0) for m in models[4]]
    return models


def _reply(model: list[np.ndarray], examples: int, node: int) -> Message:
    sent = Message(RecordDict(), dst_node_id=node, message_type="train")
    sent.metadata.__dict__["_message_id"] = f"sent-{node}"
    sent.metadata.__dict__["_src_node_id"] = 1
    content = RecordDict({PUBLISHED_KEY: ArrayRecord([m.copy() for m in model]),
                          METRICS_KEY: MetricRecord({WEIGHT_KEY: examples})})
    return Message(content, reply_to=sent)


@pytest.mark.parametrize("algorithm", sorted(OPTIONS))
def test_the_server_update_equals_flowers_class(algorithm: str, task_identity: None) -> None:
    options = _options(algorithm)
    entry = METHODS[algorithm]
    assert entry.stock is not None
    observed: list[ArrayRecord | None] = []
    flower = ObservedStrategy(stock_strategy(entry.stock, options), lambda _: None,
                              lambda _, __, arrays: observed.append(arrays))
    rule = entry.server_rule(options)
    grid = InProcessGrid(CLIENTS)
    rng = np.random.default_rng(0)
    flower_model = [rng.normal(size=shape).astype(np.float32) for shape in SHAPES]
    model = [torch.from_numpy(m.copy()) for m in flower_model]
    state: ServerState = {}
    for server_round in range(1, ROUNDS + 1):
        clients = client_models(server_round, flower_model)
        list(flower.configure_train(server_round, ArrayRecord([m.copy() for m in flower_model]),
                                    ConfigRecord(), grid))
        replies = [_reply(m, n, 100 + i) for i, (m, n) in enumerate(zip(clients, EXAMPLES,
                                                                          strict=True))]
        arrays, _ = flower.aggregate_train(server_round, replies)
        stacked = Replies([torch.from_numpy(np.stack(layer)) for layer in zip(*clients,
                                                                             strict=True)],
                          torch.as_tensor(EXAMPLES, dtype=torch.float32))
        updated, state = rule(server_round, model, stacked, state)
        assert arrays is not None and updated is not None
        flower_model = arrays.to_numpy_ndarrays()
        for got, want in zip(updated, flower_model, strict=True):
            assert got.dtype == torch.float32 and want.dtype == np.float32
            np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-6)
        model = updated
    assert observed and observed[-1] is not None


def test_robust_rules_leave_the_outlier_out() -> None:
    """The outlier (+5 on every coordinate) moves FedAvg by about 5 n_4/Σn; the median,
    the trimmed mean, Krum and Bulyan stay within the honest clients' spread."""
    base = [np.zeros(shape, dtype=np.float32) for shape in SHAPES]
    clients = client_models(1, base)
    replies = Replies([torch.from_numpy(np.stack(layer)) for layer in zip(*clients, strict=True)],
                      torch.as_tensor(EXAMPLES, dtype=torch.float32))
    current = [torch.from_numpy(b) for b in base]
    shift = {}
    for algorithm in ("fedavg", "fedmedian", "fedtrimmedavg", "krum", "multikrum", "bulyan"):
        updated, _ = METHODS[algorithm].server_rule(_options(algorithm))(1, current, replies, {})
        assert updated is not None
        shift[algorithm] = float(updated[0].mean())
    assert shift["fedavg"] == pytest.approx(5.0 * 5 / sum(EXAMPLES), abs=0.05)
    for algorithm in ("fedmedian", "fedtrimmedavg", "krum", "multikrum", "bulyan"):
        assert abs(shift[algorithm]) < 0.05, algorithm


def test_bulyan_needs_4f_plus_3_clients() -> None:
    """With f = 2 it needs 11 clients: 7 give no update (Flower's Bulyan skips the round)."""
    clients = client_models(1, [np.zeros(shape, dtype=np.float32) for shape in SHAPES])
    replies = Replies([torch.from_numpy(np.stack(layer)) for layer in zip(*clients, strict=True)],
                      torch.as_tensor(EXAMPLES, dtype=torch.float32))
    rule = METHODS["bulyan"].server_rule({**_options("bulyan"), "num_malicious_nodes": 2})
    updated, state = rule(1, [torch.zeros(shape) for shape in SHAPES], replies, {})
    assert updated is None and state == {}


def test_the_order_statistics_are_numpys() -> None:
    """An even count's median is the mean of the two middle values; the trimmed mean cuts
    ⌊β n⌋ at each end; squared distances are ||a||² + ||b||² − 2 a·b."""
    values = np.array([[1.0], [7.0], [3.0], [100.0]], dtype=np.float32)
    assert trimmed_mean(values, 0.25)[0] == pytest.approx(5.0)
    models = [np.array([[0.0, 0.0], [3.0, 4.0]], dtype=np.float32)]
    np.testing.assert_allclose(squared_distances(models), [[0.0, 25.0], [25.0, 0.0]])
