"""The paper's theory on a strongly convex problem, through the product's update code.

Per-agent least squares f_j(x) = (1/2m) ||A_j x − b_j||² with different data
per agent on an 8-agent ring (Metropolis weights, λ2 = 1/3 + 2/3·cos(π/4)).
The iterations call `strategies.cdsgd.cdsgd_update`, the function the
ClientApp uses.
"""

from __future__ import annotations

import numpy as np
import torch

from decentral_bench.network.topology import build_topology
from decentral_bench.scenario import TopologyConfig
from strategies.cdsgd import cdsgd_update
from strategies.neighbourhood import neighbourhood

AGENTS, DIMENSION, ROWS = 8, 5, 60
TOPOLOGY = build_topology(TopologyConfig(kind="ring", agents=AGENTS))
PI = TOPOLOGY.mixing_matrix


def _problem(seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    a = [rng.normal(size=(ROWS, DIMENSION)) for _ in range(AGENTS)]
    # Each agent's data has its own optimum, so consensus is not free.
    b = [m @ rng.normal(loc=j, size=DIMENSION) + 0.1 * rng.normal(size=ROWS)
         for j, m in enumerate(a)]
    optimum = np.linalg.solve(sum(m.T @ m for m in a),
                              sum(m.T @ v for m, v in zip(a, b, strict=True)))
    return a, b, optimum


def _gradient(a: np.ndarray, b: np.ndarray, x: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    if rows is not None:
        a, b = a[rows], b[rows]
    return a.T @ (a @ x - b) / len(b)


def _run(alpha: float, rounds: int, batch: int | None, seed: int = 0,
         ) -> tuple[list[np.ndarray], list[float]]:
    """CDSGD iterates (N×d per round) and the largest gradient norm met."""
    a, b, _ = _problem()
    rng = np.random.default_rng(seed)
    x = np.zeros((AGENTS, DIMENSION))
    history, gradient_norms = [x], []
    for _ in range(rounds):
        rows = [None if batch is None else rng.choice(ROWS, batch, replace=False)
                for _ in range(AGENTS)]
        grads = [_gradient(a[j], b[j], x[j], rows[j]) for j in range(AGENTS)]
        gradient_norms += [float(np.linalg.norm(g)) for g in grads]
        updated = []
        for j in range(AGENTS):
            neighbours = neighbourhood(PI, j)
            step = cdsgd_update([[torch.as_tensor(x[l])] for l in neighbours],
                                [float(PI[j, l]) for l in neighbours],
                                [torch.as_tensor(grads[j])], alpha)
            updated.append(step[0].numpy())
        x = np.stack(updated)
        history.append(x)
    return history, gradient_norms


def test_proposition_1_consensus_bound() -> None:
    alpha = 0.05
    history, gradient_norms = _run(alpha, rounds=400, batch=10)
    bound = alpha * max(gradient_norms) / (1 - TOPOLOGY.lambda2)
    for x in history[50:]:
        average = x.mean(axis=0)
        assert np.mean(np.linalg.norm(x - average, axis=1)) <= bound
    # The bound is not vacuous: agents do disagree by a sizeable fraction of it.
    assert np.mean(np.linalg.norm(history[-1] - history[-1].mean(axis=0), axis=1)) > 0.05 * bound


def test_theorem_1_linear_convergence_with_exact_gradients() -> None:
    alpha = 0.1
    a, b, _ = _problem()
    # The fixed point of x = Πx − α∇F(x): ((I − Π) ⊗ I + α·blockdiag(H_j)) x = α·c.
    hessians = [m.T @ m / ROWS for m in a]
    system = np.kron(np.eye(AGENTS) - PI, np.eye(DIMENSION))
    for j, h in enumerate(hessians):
        block = slice(j * DIMENSION, (j + 1) * DIMENSION)
        system[block, block] += alpha * h
    target = alpha * np.concatenate([m.T @ v / ROWS for m, v in zip(a, b, strict=True)])
    fixed_point = np.linalg.solve(system, target).reshape(AGENTS, DIMENSION)
    history, _ = _run(alpha, rounds=150, batch=None)
    errors = np.array([np.linalg.norm(x - fixed_point) for x in history])
    assert np.all(errors[1:] < errors[:-1])  # strictly decreasing
    slope, _ = np.polyfit(np.arange(len(errors)), np.log(errors), 1)
    assert slope < -0.02  # log error falls at least linearly in k
    assert errors[-1] < 1e-3 * errors[0]


def test_theorem_1_smaller_step_smaller_neighbourhood() -> None:
    _, _, optimum = _problem()

    def final_error(alpha: float) -> float:
        errors = []
        for seed in range(3):
            history, _ = _run(alpha, rounds=1500, batch=5, seed=seed)
            errors += [np.mean(np.sum((x - optimum) ** 2, axis=1)) for x in history[-300:]]
        return float(np.mean(errors))

    large, small = final_error(0.08), final_error(0.04)
    assert small < 0.75 * large
