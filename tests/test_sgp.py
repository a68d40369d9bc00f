"""SGP (push-sum) on directed graphs: the rule against Assran et al.'s equations in NumPy,
exact averaging without gradients, the column-stochastic Π of the directed families,
bad input, and the vectorized engine against the matrix form (the Flower engine against
the vectorized one is tests/test_vectorized.py's slow case `sgp-directed`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import observed_run, tiny_scenario
from typer.testing import CliRunner

from decentral_bench.cli import entry as cli
from decentral_bench.engines.reference import reference_push_sum
from decentral_bench.engines.vectorized import VectorizedEngine
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.network.topology import build_topology
from decentral_bench.scenario import TopologyConfig
from strategies.sgp import SGP

# An irregular directed graph: agent 0 sends to three agents, the others to one, so its
# column-stochastic Π is not doubly stochastic and push-sum's weights move away from 1.
EDGES = [[0, 1], [1, 2], [2, 3], [3, 4], [4, 0], [0, 2], [0, 3]]


def _matrix(kind: str, agents: int = 5) -> np.ndarray:
    topology = {"kind": kind, "agents": agents, **({"edges": EDGES} if kind ==
                                                    "directed_edges" else {})}
    return build_topology(TopologyConfig(**topology)).mixing_matrix  # type: ignore[arg-type]


def _run_rule(matrix: np.ndarray, x0: np.ndarray, centres: np.ndarray, lr: float,
              rounds: int) -> np.ndarray:
    """The SGP rule on a stack of agents, mixing with `matrix`; f_j(z) = ½‖z − c_j‖²."""
    rule, weights = SGP(), torch.as_tensor(matrix)

    def gradient_at(points: list[torch.Tensor], step: int) -> tuple[list[torch.Tensor], object]:
        return [points[0] - torch.as_tensor(centres)], torch.zeros(len(centres))

    state = rule.start([torch.as_tensor(x0)], gradient_at, lr)
    for step in range(1, rounds + 1):
        mixed = [weights @ m.reshape(len(x0), -1) for m in rule.message(state)]
        mixed = [m.reshape(p.shape) for m, p in zip(mixed, rule.message(state), strict=True)]
        state, _ = rule.advance(state, mixed, torch.as_tensor(np.diag(matrix).copy()), gradient_at,
                                lr, step)
    return rule.model(state)[0].numpy()


def test_a_directed_edge_file_reads_pairs_j_to_l(tmp_path: Path) -> None:
    edges = tmp_path / "edges.txt"
    edges.write_text("# sender receiver\n" + "\n".join(f"{j} {l}" for j, l in EDGES) + "\n")
    from_file = build_topology(TopologyConfig(kind="directed_edges", agents=5,
                                              edges=str(edges)))
    np.testing.assert_array_equal(from_file.mixing_matrix, _matrix("directed_edges"))
    assert from_file.directed and from_file.graph.number_of_edges() == 7


def test_the_directed_families_have_column_stochastic_matrices() -> None:
    ring = _matrix("directed_ring", 4)
    np.testing.assert_array_equal(ring, [[0.5, 0, 0, 0.5], [0.5, 0.5, 0, 0],
                                         [0, 0.5, 0.5, 0], [0, 0, 0.5, 0.5]])
    irregular = _matrix("directed_edges")
    np.testing.assert_allclose(irregular.sum(axis=0), 1.0)
    assert irregular[:, 0].tolist() == [0.25, 0.25, 0.25, 0.25, 0.0]  # 0 → 1, 2, 3
    assert not np.allclose(irregular.sum(axis=1), 1.0)  # not doubly stochastic
    exponential = _matrix("directed_exponential", 8)
    assert sorted(np.flatnonzero(exponential[:, 0])) == [0, 1, 2, 4]


@pytest.mark.parametrize("kind", ["directed_ring", "directed_edges"])
def test_push_sum_averages_exactly_without_gradients(kind: str) -> None:
    """No gradient: z^i → x̄ (to 1e-9), while on the irregular graph the numerators x^i
    alone settle on a biased point."""
    x0 = np.random.default_rng(1).normal(size=(5, 3))
    matrix = _matrix(kind)
    z = _run_rule(matrix, x0, np.zeros((5, 3)), lr=0.0, rounds=300)
    np.testing.assert_allclose(z, np.tile(x0.mean(axis=0), (5, 1)), atol=1e-9)
    if kind == "directed_edges":
        numerators = np.linalg.matrix_power(matrix, 300) @ x0
        assert np.abs(numerators - x0.mean(axis=0)).max() > 0.05


def test_sgp_follows_its_equations_in_numpy() -> None:
    """Assran et al. Algorithm 1 with f_j(z) = ½‖z − c_j‖², written out in NumPy."""
    rng = np.random.default_rng(2)
    matrix = rng.random((5, 5)) * (rng.random((5, 5)) < 0.6) + np.eye(5)
    matrix /= matrix.sum(axis=0, keepdims=True)  # column-stochastic
    x0, centres, lr = rng.normal(size=(5, 4)), rng.normal(size=(5, 4)), 0.3
    z, w = x0.copy(), np.ones((5, 1))
    half = x0 - lr * (z - centres)
    for _ in range(6):
        x = matrix @ half
        w = matrix @ w
        z = x / w
        half = x - lr * (z - centres)
    np.testing.assert_allclose(_run_rule(matrix, x0, centres, lr, rounds=6), z, atol=1e-12)


def test_sgp_on_the_vectorized_engine_equals_the_matrix_form() -> None:
    plan = MethodPlan.of(tiny_scenario(
        topology={"kind": "directed_edges", "agents": 5, "edges": EDGES},
        methods=[{"name": "S", "algorithm": "sgp"}],
        training={"rounds": 4, "batch_size": 16, "lr": 0.1, "seed": 3}), "S")
    final, rounds, _ = observed_run(plan, VectorizedEngine())
    expected = reference_push_sum(plan)
    for agent in expected:
        for got, want in zip(final[agent], expected[agent], strict=True):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert not np.allclose(final[0][0], plan.initial_parameters[0])  # it trained
    model = 4 * (64 * 16 + 16 + 16 * 10 + 10)
    assert rounds[4]["bytes_moved"] == 7 * (model + 4)  # 7 directed edges, x and w
    # The router: each agent gets its in-neighbours' and its own message (12) and replies
    # with its message (5) and, since z is not its message, its model (5).
    assert rounds[4]["router_bytes_moved"] == 17 * (model + 4) + 5 * model


@pytest.mark.parametrize(("topology", "algorithm", "message"), [
    ({"kind": "directed_ring", "agents": 5}, "cdsgd",
     "needs a doubly stochastic Π, which the directed_ring graph has not"),
    ({"kind": "directed_exponential", "agents": 8}, "cdmsgd", "use algorithm: sgp (push-sum)"),
    ({"kind": "directed_edges", "agents": 3, "edges": [[0, 1], [1, 2]]}, "sgp",
     "is not strongly connected"),
])
def test_validate_rejects_what_push_sum_needs(tmp_path: Path, topology: dict, algorithm: str,
                                               message: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps({"name": "s", "dataset": {"name": "digits"},
                                "topology": topology, "training": {"rounds": 3},
                                "methods": [{"name": "M", "algorithm": algorithm}]}))
    result = CliRunner().invoke(cli.cli, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "s.yaml" in result.output
    assert message in " ".join(result.output.split())


@pytest.mark.parametrize("nesterov", [True, False])
def test_local_momentum_is_pytorch_sgd_on_the_numerator(nesterov: bool) -> None:
    """On one agent (P = [1], w = 1) SGP with momentum steps exactly as the authors' code,
    PyTorch's SGD with momentum 0.9, on f(x) = ½‖x − c‖²."""
    centre, x0, lr = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([3.0, 0.0, -1.0]), 0.1
    rule = SGP(momentum=0.9, nesterov=nesterov)

    def gradient_at(points: list[torch.Tensor], step: int) -> tuple[list[torch.Tensor], float]:
        return [points[0] - centre], 0.0

    state = rule.start([x0.clone()], gradient_at, lr)
    for step in range(1, 6):
        state, _ = rule.advance(state, rule.message(state), 1.0, gradient_at, lr, step)
    parameter = x0.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([parameter], lr=lr, momentum=0.9, nesterov=nesterov)
    for _ in range(6):  # start's step and five rounds'
        optimizer.zero_grad()
        (0.5 * ((parameter - centre) ** 2).sum()).backward()
        optimizer.step()
    torch.testing.assert_close(rule.message(state)[0], parameter.detach(), rtol=0,
                               atol=1e-6)
