"""Bad input for the heterogeneity methods and the stock strategies: each is refused by
`validate` (exit 2) with the file, the key path and the fix."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from decentral_bench.cli import entry as cli
from decentral_bench.network.topology import lazy, metropolis_weights
from decentral_bench.run.checks import check_scenario
from decentral_bench.scenario import ScenarioError
from strategies.d2 import D2
from strategies.gossip import gossip_round, gradient_steps

SCENARIO = """\
name: checked
model: {{name: mlp, hidden: [8]}}
topology: {topology}
training: {training}
methods: [{methods}]
"""


def _file(tmp_path: Path, methods: str, topology: str = "{kind: ring, agents: 4}",
          training: str = "{rounds: 2, batch_size: 16}") -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.format(methods=methods, topology=topology, training=training))
    return path


def _refused(path: Path) -> tuple[str, str]:
    """The one problem `validate` finds, as (key, message); the CLI exits 2 with it."""
    with pytest.raises(ScenarioError) as caught:
        check_scenario(path)
    [(key, message)] = caught.value.problems
    done = CliRunner().invoke(cli.cli, ["validate", str(path)])
    assert done.exit_code == 2, done.output
    assert str(path.name) in done.output and key in done.output
    return key, message


def test_d2_on_a_ring_whose_lowest_eigenvalue_is_minus_a_third_is_refused(
        tmp_path: Path) -> None:
    """The Metropolis ring of 4 has λN = −1/3 exactly: D²'s bound, which an eigensolver
    can land a rounding error above."""
    key, message = _refused(_file(tmp_path, "{name: D, algorithm: d2}"))
    assert key == "methods[0]"
    assert "'D' (D², Tang et al. 2018)" in message
    assert "λN = -0.3333" in message and "−1/3 = -0.3333" in message
    assert "topology.lazy: true" in message


def test_d2_on_the_lazy_ring_passes(tmp_path: Path) -> None:
    check_scenario(_file(tmp_path, "{name: D, algorithm: d2}",
                         topology="{kind: ring, agents: 4, lazy: true}"))
    check_scenario(_file(tmp_path, "{name: D, algorithm: d2}",
                         topology="{kind: ring, agents: 5}"))  # odd ring: λN > −1/3


RING = metropolis_weights(nx.cycle_graph(4))  # eigenvalues 1, 1/3, 1/3, −1/3


@pytest.mark.parametrize(("mixing", "shrinks"), [(lazy(RING), True), (RING, False)])
def test_the_bound_is_where_d2s_disagreement_stops_shrinking(mixing: np.ndarray,
                                                             shrinks: bool) -> None:
    """No gradient: on the lazy ring the agents' disagreement decays; at λN = −1/3 the
    alternating mode's roots are 1/3 and −1, so half of it stays forever."""
    rule = D2()
    matrix = torch.as_tensor(mixing)
    x0 = [torch.as_tensor([[1.0], [-1.0], [1.0], [-1.0]], dtype=torch.float64)]

    def no_gradient(points: list[torch.Tensor], step: int) -> tuple[list[torch.Tensor], None]:
        return [torch.zeros_like(p) for p in points], None

    state = rule.start(x0, no_gradient, 0.1)
    for k in range(1, 201):
        mixed = [matrix @ m for m in rule.message(state)]
        state, _ = gossip_round(rule, state, mixed, torch.diagonal(matrix), no_gradient, 0.1,
                                gradient_steps(rule, k, 1))
    spread = float(state["x"][0].abs().max())
    assert spread < 1e-6 if shrinks else spread == pytest.approx(0.5, abs=1e-9)


@pytest.mark.parametrize(("methods", "key", "words"), [
    ("{name: G, algorithm: gradient_tracking, local_steps: 2}", "methods[0]",
     "gradient tracking takes one gradient step per gossip round"),
    ("{name: Q, algorithm: qg_dsgdm, consensus_control: {mode: exact}}", "methods[0]",
     "'consensus_control' applies to algorithm 'cdsgd' or 'cdmsgd' only, not 'qg_dsgdm'"),
    ("{name: A, algorithm: fedadam, server_momentum: 0.9}", "methods[0]",
     "'server_momentum' applies to algorithm 'fedavgm' only, not 'fedadam'"),
    ("{name: P, algorithm: fedavg, proximal_mu: 0.1}", "methods[0]",
     "'proximal_mu' applies to algorithm 'fedprox' only, not 'fedavg'"),
    ("{name: K, algorithm: krum, num_nodes_to_select: 2}", "methods[0]",
     "'num_nodes_to_select' applies to algorithm 'multikrum' only, not 'krum'"),
    ("{name: T, algorithm: fedtrimmedavg, trim_fraction: 0.5}", "methods[0].trim_fraction",
     "less than 0.5"),
])
def test_an_option_of_another_algorithm_or_out_of_range_is_refused(
        tmp_path: Path, methods: str, key: str, words: str) -> None:
    found, message = _refused(_file(tmp_path, methods))
    assert found == key and words in message


def test_training_local_steps_above_one_is_refused_for_a_one_step_method(
        tmp_path: Path) -> None:
    key, message = _refused(_file(tmp_path, "{name: C, algorithm: cdsgd}, "
                                            "{name: D, algorithm: d2}",
                                  topology="{kind: ring, agents: 5}",
                                  training="{rounds: 2, batch_size: 16, local_steps: 3}"))
    assert key == "methods[1]"
    assert "training.local_steps is 3, but D² takes one gradient step" in message
    assert "give the other methods their own local_steps" in message


def test_bulyan_without_4f_plus_3_clients_is_refused(tmp_path: Path) -> None:
    key, message = _refused(_file(tmp_path, "{name: B, algorithm: bulyan, "
                                            "num_malicious_nodes: 1}",
                                  topology="{kind: ring, agents: 6}"))
    assert key == "methods[0]"
    assert "needs at least 7 clients a round, but its rounds sample 6 of 6" in message
    check_scenario(_file(tmp_path, "{name: B, algorithm: bulyan, num_malicious_nodes: 1}",
                         topology="{kind: ring, agents: 7}"))
