"""The server update of each of Flower's stock strategies, as pure functions of one round.

On the Flower engine the server runs Flower's own class (`strategies.stock`); on the
vectorized engine these functions compute the same update from the same replies, with the
same arithmetic (float32 where Flower's NumPy is float32; NumPy itself for the order
statistics, so ties and medians resolve as in Flower). Each function takes the round, the
global model x_t the round started from, the replies (each client's model x_t^i and its
example count n_i, Flower's `num-examples` weight) and the server's state, and returns the
new global model (None: the round aggregates nothing, as Bulyan with too few replies) and
the new state. Nothing is changed in place.

With Δ_t = Σ_i (n_i / Σn) x_t^i − x_t (the averaged update):

- FedAvg, FedProx: x_{t+1} = Σ_i (n_i / Σn) x_t^i (`aggregate_arrayrecords`);
- FedAvgM (Hsu et al. 2019): v_t = β v_{t−1} − Δ_t (v_1 = −Δ_1), x_{t+1} = x_t − η v_t;
- FedAdam, FedYogi, FedAdagrad (Reddi et al. 2021): m_t = β1 m_{t−1} + (1 − β1) Δ_t and
  Adam v_t = β2 v_{t−1} + (1 − β2) Δ_t², Yogi v_t = v_{t−1} − (1 − β2) Δ_t² sign(v_{t−1} − Δ_t²),
  Adagrad v_t = v_{t−1} + Δ_t²; x_{t+1} = x_t + η_t m_t / (√v_t + τ), η_t = η for Yogi and
  Adagrad, η √(1 − β2^{t+1}) / (1 − β1^{t+1}) for Adam (Flower's bias correction);
- FedMedian (Yin et al. 2018): the coordinate-wise median of the x_t^i;
- FedTrimmedAvg: the coordinate-wise mean after cutting ⌊β n⌋ values at each end;
- Krum, MultiKrum (Blanchard et al. 2017): score each x_t^i by the summed squared distances
  to its n − f − 2 nearest others, average (weighted by n_i) the m of lowest score (Krum:
  m = 1);
- Bulyan (El Mhamdi et al. 2018): MultiKrum selects θ = n − 2f, then each coordinate is the
  mean of the β = θ − 2f selected values closest to their median; n ≥ 4f + 3 or no update.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

Stack = list[torch.Tensor]  # one tensor per parameter, clients along dimension 0
ServerState = dict[str, list[torch.Tensor]]


@dataclass(frozen=True)
class Replies:
    """One round's replies: each client's model (stacked) and its example count n_i."""

    models: Stack
    examples: torch.Tensor


Update = tuple[list[torch.Tensor] | None, ServerState]
# (server round, global model x_t, replies, server state) → (x_{t+1} or None, state)
ServerRule = Callable[[int, list[torch.Tensor], Replies, ServerState], Update]


def weighted_average(models: Stack, examples: torch.Tensor) -> list[torch.Tensor]:
    """Σ_i (n_i / Σn) x^i, each weight a float32 factor as NumPy applies a Python float."""
    share = (examples.to(torch.float64) / examples.to(torch.float64).sum())
    return [(share.to(p.dtype).view(-1, *[1] * (p.dim() - 1)) * p).sum(dim=0) for p in models]


def _numpy(tensors: Stack) -> list[np.ndarray]:
    return [t.detach().cpu().numpy() for t in tensors]


def _torch(arrays: list[np.ndarray], like: Stack) -> list[torch.Tensor]:
    return [torch.from_numpy(np.asarray(a)).to(device=t.device, dtype=t.dtype)
            for a, t in zip(arrays, like, strict=True)]


def fedavg(server_round: int, current: list[torch.Tensor], replies: Replies,
           state: ServerState) -> Update:
    """FedAvg (and FedProx, whose server is FedAvg's): the example-weighted average."""
    return weighted_average(replies.models, replies.examples), state


def fedavgm(server_round: int, current: list[torch.Tensor], replies: Replies,
            state: ServerState, *, server_learning_rate: float,
            server_momentum: float) -> Update:
    """FedAvgM: server SGD with momentum on the pseudo-gradient x_t − Σ (n_i/Σn) x_t^i
    (plain FedAvg when η = 1 and β = 0, as Flower's `server_opt` is off then)."""
    aggregated = weighted_average(replies.models, replies.examples)
    if server_momentum == 0.0 and server_learning_rate == 1.0:
        return aggregated, state
    pseudo_gradient = [x - a for x, a in zip(current, aggregated, strict=True)]
    if server_momentum > 0.0:
        if "momentum" in state:
            pseudo_gradient = [server_momentum * v + g
                               for v, g in zip(state["momentum"], pseudo_gradient, strict=True)]
        state = {**state, "momentum": pseudo_gradient}
    return [x - server_learning_rate * g
            for x, g in zip(current, pseudo_gradient, strict=True)], state


def _first_moment(current: list[torch.Tensor], replies: Replies, state: ServerState,
                  beta_1: float) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Δ_t and m_t = β1 m_{t−1} + (1 − β1) Δ_t (m_0 = 0), FedOpt's shared stage."""
    aggregated = weighted_average(replies.models, replies.examples)
    delta = [a - x for a, x in zip(aggregated, current, strict=True)]
    previous = state.get("m") or [torch.zeros_like(d) for d in delta]
    return delta, [beta_1 * m + (1 - beta_1) * d for m, d in zip(previous, delta, strict=True)]


def _second_moment(state: ServerState, delta: list[torch.Tensor]) -> list[torch.Tensor]:
    return state.get("v") or [torch.zeros_like(d) for d in delta]


def fedadam(server_round: int, current: list[torch.Tensor], replies: Replies,
            state: ServerState, *, eta: float, beta_1: float, beta_2: float,
            tau: float) -> Update:
    """FedAdam. Flower's bias-corrected η_t is a NumPy float64, so its step is taken in
    float64; the result is returned in the model's dtype."""
    delta, moment = _first_moment(current, replies, state, beta_1)
    second = [beta_2 * v + (1 - beta_2) * d ** 2
              for v, d in zip(_second_moment(state, delta), delta, strict=True)]
    eta_norm = eta * np.sqrt(1 - np.power(beta_2, server_round + 1.0)) \
        / (1 - np.power(beta_1, server_round + 1.0))
    updated = [(x.double() + float(eta_norm) * m.double() / (torch.sqrt(v) + tau).double()
                ).to(x.dtype) for x, m, v in zip(current, moment, second, strict=True)]
    return updated, {"m": moment, "v": second}


def fedyogi(server_round: int, current: list[torch.Tensor], replies: Replies,
            state: ServerState, *, eta: float, beta_1: float, beta_2: float,
            tau: float) -> Update:
    """FedYogi: the second moment moves towards Δ_t² by at most (1 − β2) Δ_t² a round."""
    delta, moment = _first_moment(current, replies, state, beta_1)
    second = [v - (1.0 - beta_2) * d ** 2 * torch.sign(v - d ** 2)
              for v, d in zip(_second_moment(state, delta), delta, strict=True)]
    updated = [x + eta * m / (torch.sqrt(v) + tau)
               for x, m, v in zip(current, moment, second, strict=True)]
    return updated, {"m": moment, "v": second}


def fedadagrad(server_round: int, current: list[torch.Tensor], replies: Replies,
               state: ServerState, *, eta: float, tau: float) -> Update:
    """FedAdagrad: β1 = 0 (m_t = Δ_t) and v_t the running sum of Δ_t²."""
    delta, moment = _first_moment(current, replies, state, 0.0)
    second = [v + d ** 2 for v, d in zip(_second_moment(state, delta), delta, strict=True)]
    updated = [x + eta * m / (torch.sqrt(v) + tau)
               for x, m, v in zip(current, moment, second, strict=True)]
    return updated, {"m": moment, "v": second}


def fedmedian(server_round: int, current: list[torch.Tensor], replies: Replies,
              state: ServerState) -> Update:
    """The coordinate-wise median (NumPy's: the mean of the two middle values for even n)."""
    return _torch([np.median(layer, axis=0) for layer in _numpy(replies.models)],
                  current), state


def trimmed_mean(values: np.ndarray, cut_fraction: float) -> np.ndarray:
    """The mean along axis 0 after removing the ⌊cut_fraction · n⌋ lowest and highest values
    of each coordinate."""
    count = values.shape[0]
    low = int(cut_fraction * count)
    high = count - low
    return np.mean(np.partition(values, (low, high - 1), axis=0)[low:high], axis=0)


def fedtrimmedavg(server_round: int, current: list[torch.Tensor], replies: Replies,
                  state: ServerState, *, beta: float) -> Update:
    """FedTrimmedAvg: the coordinate-wise trimmed mean, β cut at each end."""
    return _torch([trimmed_mean(layer, beta) for layer in _numpy(replies.models)],
                  current), state


def squared_distances(models: list[np.ndarray]) -> np.ndarray:
    """||x^i − x^l||² between the clients' flattened models, computed as Flower does:
    ||x^i||² + ||x^l||² − 2 x^i·x^l."""
    flat = np.concatenate([layer.reshape(layer.shape[0], -1) for layer in models], axis=1)
    norms = np.square(flat).sum(axis=1)
    distances: np.ndarray = norms[:, None] + norms[None, :] - 2 * flat @ flat.T
    return distances


def multikrum_selection(models: list[np.ndarray], num_malicious_nodes: int,
                        num_nodes_to_select: int) -> list[int]:
    """The clients MultiKrum keeps, lowest score first: each scored by its summed squared
    distance to its max(1, n − f − 2) nearest others."""
    distances = squared_distances(models)
    closest = max(1, len(distances) - num_malicious_nodes - 2)
    scores = [np.sum(row[np.argsort(row)[1:closest + 1]]) for row in distances]
    return [int(i) for i in np.argsort(scores)[:num_nodes_to_select]]


def multikrum(server_round: int, current: list[torch.Tensor], replies: Replies,
              state: ServerState, *, num_malicious_nodes: int,
              num_nodes_to_select: int) -> Update:
    """Krum (m = 1) and MultiKrum: the example-weighted average of the selected clients."""
    chosen = multikrum_selection(_numpy(replies.models), num_malicious_nodes,
                                 num_nodes_to_select)
    rows = torch.as_tensor(chosen, device=replies.examples.device)
    return weighted_average([p[rows] for p in replies.models], replies.examples[rows]), state


def bulyan(server_round: int, current: list[torch.Tensor], replies: Replies,
           state: ServerState, *, num_malicious_nodes: int) -> Update:
    """Bulyan: MultiKrum's θ = n − 2f, then per coordinate the mean of the β = θ − 2f
    selected values nearest their median. None when n < 4f + 3."""
    models = _numpy(replies.models)
    count, malicious = len(models[0]), num_malicious_nodes
    if count < 4 * malicious + 3:
        return None, state
    theta = count - 2 * malicious
    beta = theta - 2 * malicious
    chosen = multikrum_selection(models, malicious, theta)
    aggregated = []
    for layer in models:
        selected = layer[chosen]
        median = np.median(selected, axis=0)
        nearest = np.argpartition(np.abs(selected - median), beta - 1, axis=0)[:beta]
        aggregated.append(np.mean(np.take_along_axis(selected, nearest, axis=0), axis=0))
    return _torch(aggregated, current), state
