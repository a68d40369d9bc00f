"""Graph families, mixing rules, Assumption-2 checks and sparsity control."""

from __future__ import annotations

import math
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from decentral_bench.network.topology import (
    TARGET_TOLERANCE,
    Topology,
    TopologyError,
    build_topology,
    check_assumption_2,
    metropolis_weights,
)
from decentral_bench.scenario import TopologyConfig


def topology(**keys: object) -> Topology:
    return build_topology(TopologyConfig(**keys), seed=0)


@pytest.mark.parametrize("n", [3, 5, 8, 16, 64])
def test_ring_with_weights_one_third(n: int) -> None:
    ring = topology(kind="ring", agents=n)
    off_diagonal = ring.mixing_matrix[0, 1]
    assert off_diagonal == pytest.approx(1 / 3)
    assert ring.lambda2 == pytest.approx(1 / 3 + (2 / 3) * math.cos(2 * math.pi / n), abs=1e-12)


@pytest.mark.parametrize("n", [1, 2, 5, 32])
def test_complete_graph_is_uniform_with_lambda2_zero(n: int) -> None:
    complete = topology(kind="complete", agents=n)
    np.testing.assert_allclose(complete.mixing_matrix, np.full((n, n), 1 / n))
    assert complete.lambda2 == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("dimension", [1, 2, 3, 4, 6])
def test_hypercube_spectrum(dimension: int) -> None:
    cube = topology(kind="hypercube", agents=2 ** dimension)
    # Π = (I + A) / (d + 1); A has eigenvalues d − 2i.
    assert cube.lambda2 == pytest.approx((dimension - 1) / (dimension + 1), abs=1e-12)
    assert cube.lambda_n == pytest.approx((1 - dimension) / (dimension + 1), abs=1e-12)


@pytest.mark.parametrize(("rows", "cols"), [(4, 4), (3, 5), (6, 4)])
def test_torus_spectrum(rows: int, cols: int) -> None:
    torus = topology(kind="torus", rows=rows, cols=cols)
    assert torus.agents == rows * cols
    # Π = (I + A) / 5; A has eigenvalues 2cos(2πa/rows) + 2cos(2πb/cols).
    eigen = sorted((1 + 2 * math.cos(2 * math.pi * a / rows) + 2 * math.cos(2 * math.pi * b / cols))
                   / 5 for a in range(rows) for b in range(cols))
    np.testing.assert_allclose(torus.eigenvalues[::-1], eigen, atol=1e-12)


def test_square_torus_from_agents() -> None:
    assert topology(kind="torus", agents=16).graph.number_of_edges() == 32
    with pytest.raises(TopologyError, match="needs rows and cols"):
        topology(kind="torus", agents=12)


def test_other_families_are_connected_and_doubly_stochastic() -> None:
    for keys in [dict(kind="path", agents=7), dict(kind="star", agents=9),
                 dict(kind="exponential", agents=12), dict(kind="erdos_renyi", agents=30, p=0.3),
                 dict(kind="random_regular", agents=20, degree=3),
                 dict(kind="small_world", agents=20, k=4, p=0.2),
                 dict(kind="edges", edges=[[0, 1], [1, 2], [2, 3]]),
                 dict(kind="ring", agents=256)]:
        built = topology(**keys)
        assert nx.is_connected(built.graph)
        np.testing.assert_allclose(built.mixing_matrix.sum(axis=0), 1.0, atol=1e-12)
        np.testing.assert_allclose(built.mixing_matrix, built.mixing_matrix.T)


def test_exponential_graph_links_powers_of_two() -> None:
    built = topology(kind="exponential", agents=16)
    assert sorted(built.graph.neighbors(0)) == [1, 2, 4, 8, 12, 14, 15]


def test_erdos_renyi_is_deterministic_under_the_seed() -> None:
    first = build_topology(TopologyConfig(kind="erdos_renyi", agents=40, p=0.12), seed=7)
    again = build_topology(TopologyConfig(kind="erdos_renyi", agents=40, p=0.12), seed=7)
    other = build_topology(TopologyConfig(kind="erdos_renyi", agents=40, p=0.12), seed=8)
    assert sorted(first.graph.edges()) == sorted(again.graph.edges())
    assert sorted(first.graph.edges()) != sorted(other.graph.edges())


def test_hopeless_erdos_renyi_is_an_error() -> None:
    with pytest.raises(TopologyError, match=r"almost never connected; use p well above ln\(N\)/N"):
        topology(kind="erdos_renyi", agents=100, p=0.01)


def test_disconnected_edge_list_is_an_error() -> None:
    with pytest.raises(TopologyError, match="disconnected \\(2 components\\)"):
        topology(kind="edges", agents=4, edges=[[0, 1], [2, 3]])


def test_edge_list_from_file(tmp_path: Path) -> None:
    path = tmp_path / "graph.txt"
    path.write_text("# a square\n0 1\n1 2\n2,3\n3 0\n")
    config = TopologyConfig.model_validate({"kind": "edges", "agents": 4, "edges": "graph.txt"},
                                           context={"base": tmp_path})
    built = build_topology(config)
    assert built.graph.number_of_edges() == 4
    assert built.lambda2 == pytest.approx(1 / 3)  # ring of 4: 1/3 + 2/3·cos(π/2)


def test_mixing_rules() -> None:
    star = nx.star_graph(4)
    max_degree = topology(kind="star", agents=5, mixing="max_degree").mixing_matrix
    assert max_degree[1, 0] == pytest.approx(1 / 5) and max_degree[1, 1] == pytest.approx(4 / 5)
    np.testing.assert_allclose(topology(kind="star", agents=5).mixing_matrix,
                               metropolis_weights(star))
    uniform = topology(kind="ring", agents=6, mixing="uniform").mixing_matrix
    assert uniform[0, 1] == pytest.approx(1 / 3)
    with pytest.raises(TopologyError, match=r"not symmetric on this graph.*use mixing: metropolis"):
        topology(kind="star", agents=5, mixing="uniform")
    lazy = topology(kind="ring", agents=6, lazy=True)
    assert lazy.mixing_matrix[0, 0] == pytest.approx(2 / 3)
    assert lazy.lambda_n >= 0.0


def test_matrix_from_file(tmp_path: Path) -> None:
    matrix = np.array([[0.5, 0.5, 0.0], [0.5, 0.25, 0.25], [0.0, 0.25, 0.75]])
    np.save(tmp_path / "pi.npy", matrix)
    np.savetxt(tmp_path / "pi.csv", matrix, delimiter=",")
    for name in ("pi.npy", "pi.csv"):
        config = TopologyConfig.model_validate(
            {"kind": "path", "agents": 3, "mixing": "matrix", "matrix_file": name},
            context={"base": tmp_path})
        np.testing.assert_allclose(build_topology(config).mixing_matrix, matrix)


# Hand-built matrices, each breaking one condition of Assumption 2.
PATH3 = nx.path_graph(3)
GOOD = np.array([[0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]])


@pytest.mark.parametrize(("matrix", "graph", "message"), [
    (np.array([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5]]), PATH3,
     r"2\(a\) violated.*π\[0,2\]=0.25"),
    (np.array([[0.6, 0.4, 0.0], [0.3, 0.2, 0.5], [0.0, 0.6, 0.4]]), PATH3,
     r"2\(b\) violated: Π is not symmetric: π\[0,1\]=0.4 but π\[1,0\]=0.3"),
    (np.array([[0.5, 0.4, 0.0], [0.4, 0.1, 0.5], [0.0, 0.5, 0.5]]), PATH3,
     r"rows must sum to 1\): row 0 sums to 0.9"),
    (np.eye(3), PATH3, r"2\(c\) violated.*λ2 = 1"),
    (np.array([[0.0, 1.0], [1.0, 0.0]]), nx.path_graph(2),
     r"2\(d\) violated: Π ≻ −I fails, λN = -1"),
    (np.array([[1.5, -0.5], [-0.5, 1.5]]), nx.path_graph(2), r"negative weights"),
    # Symmetric, rows summing to 1, spectrum {1, 0.6, 0, 0}: only the sign is wrong.
    (np.full((4, 4), 0.25) + 0.3 * np.outer([1, -1, 0, 0], [1, -1, 0, 0]),
     nx.complete_graph(4), r"negative weights \(π\[0,1\]=-0.05, π\[1,0\]=-0.05\)"),
])
def test_assumption_2_violations(matrix: np.ndarray, graph: nx.Graph, message: str) -> None:
    check_assumption_2(GOOD, PATH3)
    with pytest.raises(TopologyError, match=message):
        check_assumption_2(matrix, graph)


@pytest.mark.parametrize(("keys", "target"), [
    (dict(kind="erdos_renyi", agents=32), 0.6),
    (dict(kind="random_regular", agents=24), 0.5),
    (dict(kind="small_world", agents=24, p=0.1), 0.8),
])
def test_target_lambda2_is_reached(keys: dict, target: float) -> None:
    built = topology(**keys, target_lambda2=target)
    assert abs(built.lambda2 - target) <= TARGET_TOLERANCE
    assert "target λ2" in built.note


def test_unreachable_target_lambda2_is_an_error() -> None:
    with pytest.raises(TopologyError, match=r"out of reach.*λ2 spans"):
        topology(kind="random_regular", agents=6, target_lambda2=0.99)


def test_config_rejects_keys_of_other_families() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError,
                       match="'p' applies to kind 'erdos_renyi' or 'small_world' only, not 'ring'"):
        TopologyConfig(kind="ring", agents=4, p=0.5)
    with pytest.raises(ValidationError, match="kind 'erdos_renyi' needs the edge probability"):
        TopologyConfig(kind="erdos_renyi", agents=4)
    with pytest.raises(ValidationError, match="power of two"):
        TopologyConfig(kind="hypercube", agents=6)


def test_topology_command_prints_spectrum_and_draws(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from decentral_bench.cli.entry import cli

    scenario = tmp_path / "ring.yaml"
    scenario.write_text("name: r\ntopology: {kind: ring, agents: 16}\n"
                        "methods: [{name: C, algorithm: cdsgd}]\n")
    result = CliRunner().invoke(cli, ["topology", str(scenario), "--json",
                                      "--plot", str(tmp_path / "g.png")])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout[:result.stdout.rindex("}") + 1])
    assert shown["lambda2"] == pytest.approx(1 / 3 + 2 / 3 * math.cos(2 * math.pi / 16))
    assert shown["spectral_gap"] == pytest.approx(1 - shown["lambda2"])
    assert shown["step_size_factor"] == pytest.approx(4 / 3)
    assert len(shown["matrix"]) == 16
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"


def test_topology_command_prints_a_table_and_rejects_a_disconnected_graph(
        tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from decentral_bench.cli.entry import cli

    ring = tmp_path / "ring.yaml"
    ring.write_text("name: r\ntopology: {kind: ring, agents: 16}\n"
                    "methods: [{name: C, algorithm: cdsgd}]\n")
    shown = CliRunner().invoke(cli, ["topology", str(ring)])
    assert shown.exit_code == 0, shown.output
    assert "r: ring, mixing metropolis" in shown.output
    assert f"{1 / 3 + 2 / 3 * math.cos(2 * math.pi / 16):.6g}" in shown.output  # λ2
    split = tmp_path / "split.yaml"
    split.write_text("name: s\ntopology: {kind: edges, agents: 4, edges: [[0, 1], [2, 3]]}\n"
                     "methods: [{name: C, algorithm: cdsgd}]\n")
    refused = CliRunner().invoke(cli, ["topology", str(split)])
    assert refused.exit_code == 2
    assert "split.yaml" in refused.output
    assert "the edges graph on 4 agents is disconnected" in refused.output
    validated = CliRunner().invoke(cli, ["validate", str(split)])
    assert validated.exit_code == 2
    assert "topology: the edges graph on 4 agents is disconnected" in validated.output
