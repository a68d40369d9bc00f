"""The server-based baseline: Flower's own FedAvg, unmodified."""

from __future__ import annotations

from flwr.serverapp.strategy import FedAvg


def build_fedavg(fraction: float) -> FedAvg:
    """Stock `FedAvg` sampling `fraction` of the connected clients per round.

    Clients are only trained (no federated evaluation round): each reply
    already carries the client's metrics, and the global model is evaluated
    on the server. One available node suffices, so that crashed agents
    (hidden from the grid) do not stall a round.
    """
    return FedAvg(
        fraction_train=fraction,
        fraction_evaluate=0.0,
        min_train_nodes=1,
        min_evaluate_nodes=0,
        min_available_nodes=1,
    )
