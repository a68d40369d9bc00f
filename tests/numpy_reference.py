"""An independent reference for CDSGD, CDMSGD (every form) and FedAvg, in NumPy float64.

It shares no code with the engines or the matrix form (`decentral_bench.engines.reference`):
it reads the digits data set itself, slices it into agents and minibatches from the same
seeds as the project's documented schedule (`docs/scenario-format.md`: an IID split cuts a
seeded permutation into consecutive ranges; agent j's epoch e is the permutation drawn
from (seed, 2, j, e), cut into whole batches), builds Π by the Metropolis rule, and takes
the softmax cross-entropy gradient of a linear model x = (W, b) by hand:

    logits = X Wᵀ + b,  P = softmax(logits),  D = (P − onehot(y)) / B
    ∂/∂W = Dᵀ X + λ W,  ∂/∂b = Σ_rows D + λ b

The recursions, with X_k the N agents' points stacked row-wise and G(·) their minibatch
gradients (Jiang et al. 2017, eq. 6 and supplementary 7; the authors' code for the local
velocity):

    CDSGD          X_{k+1} = Π X_k − α G(X_k)
    Polyak         X_{k+1} = Π X_k − α G(X_k) + μ (X_k − X_{k−1})
    Nesterov       Y_k = X_k + μ (X_k − X_{k−1});  X_{k+1} = Π Y_k − α G(Y_k)  (Y published)
    local Polyak   V_{k+1} = μ V_k − α G(X_k);  X_{k+1} = Π X_k + V_{k+1}
    local Nesterov V_{k+1} = μ V_k − α G(X_k);  X_{k+1} = Π X_k + μ V_{k+1} − α G(X_k)

and FedAvg (McMahan et al. 2017): the sampled agents run E local epochs of SGD from the
global model, which becomes the average of their models weighted by their sample counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

Linear = tuple[np.ndarray, np.ndarray]  # W (classes × inputs), b (classes)


@dataclass(frozen=True)
class Digits:
    """The training split of scikit-learn's digits, standardised per pixel (statistics of
    the training split, in float32 as the data set is stored), then held in float64."""

    features: np.ndarray  # samples × 64
    labels: np.ndarray

    @classmethod
    def load(cls, seed: int, test_fraction: float) -> Digits:
        digits = load_digits()
        pixels = digits.data.astype(np.float32)
        train_x, _, train_y, _ = train_test_split(pixels, digits.target, test_size=test_fraction,
                                                  random_state=seed, stratify=digits.target)
        mean, std = train_x.mean(axis=0), train_x.std(axis=0)
        std[std == 0] = 1.0
        return cls(((train_x - mean) / std).astype(np.float64), train_y.astype(np.int64))


def iid_parts(samples: int, agents: int, seed: int) -> list[np.ndarray]:
    """Agent j's indices: the j-th of N consecutive ranges (the first ones one longer when
    N does not divide the data) of the permutation drawn from (seed, 1), sorted."""
    order = np.random.default_rng([seed, 1]).permutation(samples)
    return [np.sort(part) for part in np.array_split(order, agents)]


def minibatch(size: int, batch: int, seed: int, agent: int, step: int) -> np.ndarray:
    """Positions in agent j's data of its `step`-th minibatch: epochs of ⌊size/batch⌋ whole
    batches, each epoch a fresh permutation from (seed, 2, j, epoch)."""
    if batch >= size:
        return np.random.default_rng([seed, 2, agent, step]).permutation(size)
    epoch, slot = divmod(step, size // batch)
    return np.random.default_rng([seed, 2, agent, epoch]).permutation(size)[
        slot * batch:(slot + 1) * batch]


def linear_start(seed: int, inputs: int, classes: int) -> Linear:
    """x_0: PyTorch's default initialisation of a Linear layer under `seed`, in float64."""
    torch.manual_seed(seed)
    layer = torch.nn.Linear(inputs, classes)
    return (layer.weight.detach().numpy().astype(np.float64),
            layer.bias.detach().numpy().astype(np.float64))


def gradient(point: Linear, features: np.ndarray, labels: np.ndarray,
             weight_decay: float) -> Linear:
    """The mean softmax cross-entropy gradient of the linear model at `point`, plus λ x."""
    weight, bias = point
    logits = features @ weight.T + bias
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    probabilities[np.arange(len(labels)), labels] -= 1.0
    delta = probabilities / len(labels)
    return delta.T @ features + weight_decay * weight, delta.sum(axis=0) + weight_decay * bias


def ring_metropolis(agents: int) -> np.ndarray:
    """Π of the ring under the Metropolis rule: every degree is 2, so 1/3 on each edge and
    on the diagonal (a 2-ring is one edge: 1/2)."""
    if agents == 2:
        return np.full((2, 2), 0.5)
    matrix = np.eye(agents) / 3.0
    for j in range(agents):
        matrix[j, (j + 1) % agents] = matrix[j, (j - 1) % agents] = 1.0 / 3.0
    return matrix


@dataclass(frozen=True)
class Setting:
    """What both the engines' scenario and this reference are told."""

    agents: int
    rounds: int
    batch_size: int
    lr: float
    seed: int
    local_steps: int = 1
    weight_decay: float = 0.0
    diminishing: float | None = None  # ε of α_k = α_0 / (k + 1)^ε
    test_fraction: float = 0.2

    def lr_at(self, server_round: int) -> float:
        return self.lr / server_round ** self.diminishing if self.diminishing else self.lr


class _Agents:
    """Every agent's data and its minibatch gradients."""

    def __init__(self, setting: Setting) -> None:
        self.setting = setting
        data = Digits.load(setting.seed, setting.test_fraction)
        self.parts = [(data.features[part], data.labels[part])
                      for part in iid_parts(len(data.labels), setting.agents, setting.seed)]
        self.start = linear_start(setting.seed, data.features.shape[1],
                                  int(data.labels.max()) + 1)

    def gradient(self, agent: int, point: Linear, step: int) -> Linear:
        features, labels = self.parts[agent]
        rows = minibatch(len(labels), self.setting.batch_size, self.setting.seed, agent, step)
        return gradient(point, features[rows], labels[rows], self.setting.weight_decay)


def _stacked(points: Sequence[Linear]) -> list[np.ndarray]:
    return [np.stack([p[i] for p in points]) for i in range(2)]


def _rows(stack: Sequence[np.ndarray]) -> list[Linear]:
    return [(stack[0][j], stack[1][j]) for j in range(len(stack[0]))]


def gossip(setting: Setting, rule: str, momentum: float = 0.0,
           mixing: np.ndarray | None = None) -> list[Linear]:
    """Every agent's published point after `setting.rounds` rounds of `rule` (cdsgd, polyak,
    nesterov, polyak-local, nesterov-local), each round one consensus step and
    `local_steps` − 1 steps with Π = I."""
    agents = _Agents(setting)
    n = setting.agents
    pi = ring_metropolis(n) if mixing is None else mixing
    x = [np.stack([agents.start[i]] * n) for i in range(2)]
    previous = [a.copy() for a in x]
    velocity = [np.zeros_like(a) for a in x]
    for server_round in range(1, setting.rounds + 1):
        lr = setting.lr_at(server_round)
        for local in range(setting.local_steps):
            step = (server_round - 1) * setting.local_steps + local
            w = pi if local == 0 else np.eye(n)
            at = lookahead(x, previous, momentum) if rule == "nesterov" else x
            mix = [np.einsum("jl,l...->j...", w, a) for a in at]
            g = _stacked([agents.gradient(j, point, step) for j, point in enumerate(_rows(at))])
            if rule in ("cdsgd", "nesterov"):
                new = [m - lr * gi for m, gi in zip(mix, g, strict=True)]
            elif rule == "polyak":
                new = [m - lr * gi + momentum * (xi - xp)
                       for m, gi, xi, xp in zip(mix, g, x, previous, strict=True)]
            else:
                velocity = [momentum * v - lr * gi for v, gi in zip(velocity, g, strict=True)]
                steps = velocity if rule == "polyak-local" else \
                    [momentum * v - lr * gi for v, gi in zip(velocity, g, strict=True)]
                new = [m + s for m, s in zip(mix, steps, strict=True)]
            previous, x = x, new
    published = lookahead(x, previous, momentum) if rule == "nesterov" else x
    return _rows(published)


def lookahead(x: Sequence[np.ndarray], previous: Sequence[np.ndarray],
              momentum: float) -> list[np.ndarray]:
    """Nesterov's published point y_k = x_k + μ (x_k − x_{k−1})."""
    return [a + momentum * (a - b) for a, b in zip(x, previous, strict=True)]


def fedavg(setting: Setting, local_epochs: int, sampled: Sequence[Sequence[int]] | None = None,
           ) -> Linear:
    """The global model after `setting.rounds` rounds. Round k's agents are `sampled[k−1]`
    (all, by default); agent j takes E ⌊n_j / B⌋ steps (at least E), numbered on from
    (k − 1) times that."""
    agents = _Agents(setting)
    global_model = agents.start
    sizes = np.array([len(labels) for _, labels in agents.parts], dtype=np.float64)
    for server_round in range(1, setting.rounds + 1):
        chosen = list(range(setting.agents)) if sampled is None else list(sampled[server_round - 1])
        lr = setting.lr_at(server_round)
        models = []
        for j in chosen:
            steps = local_epochs * max(1, int(sizes[j]) // setting.batch_size)
            point = global_model
            for step in range((server_round - 1) * steps, server_round * steps):
                g = agents.gradient(j, point, step)
                point = (point[0] - lr * g[0], point[1] - lr * g[1])
            models.append(point)
        share = sizes[chosen] / sizes[chosen].sum()
        global_model = (np.einsum("j,j...->...", share, np.stack([m[0] for m in models])),
                        np.einsum("j,j...->...", share, np.stack([m[1] for m in models])))
    return global_model
