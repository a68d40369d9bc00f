"""A method on a graph of its own (`methods[].topology`): its plan, its runs and its checks
see that graph, the other methods the scenario's; bad keys name the method."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import tiny_scenario
from typer.testing import CliRunner

from decentral_bench.cli import entry as cli
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.experiment.sweep import expand


def _scenario():
    return tiny_scenario(
        topology={"kind": "ring", "agents": 8},
        methods=[{"name": "ring", "algorithm": "cdsgd"},
                 {"name": "push", "algorithm": "sgp",
                  "topology": {"kind": "directed_exponential"}},
                 {"name": "one-peer", "algorithm": "cdsgd",
                  "topology": {"kind": "exponential", "schedule": "one_peer_exponential"}}],
        sweep={"training.lr": [0.1, 0.05]})


def test_each_method_runs_on_its_own_graph() -> None:
    scenario = _scenario()
    ring, push, one_peer = (MethodPlan.of(scenario, name) for name in
                            ("ring", "push", "one-peer"))
    assert ring.scenario is scenario and ring.topology.graph.number_of_edges() == 8
    assert push.topology.directed and push.agents == 8
    assert push.scenario.topology.kind == "directed_exponential"
    assert [m.name for m in push.scenario.methods] == ["push"]
    assert one_peer.failure_schedule.schedule is not None  # the one-peer rounds
    specs = expand(scenario)
    assert len(specs) == 6
    kinds = {(spec.method, spec.scenario.topology.kind) for spec in specs}
    assert kinds == {("ring", "ring"), ("push", "directed_exponential"),
                     ("one-peer", "exponential")}
    # the plan a Flower client rebuilds from the run's scenario is the same graph
    again = MethodPlan.of(push.scenario, "push")
    assert again.scenario.topology == push.scenario.topology


@pytest.mark.parametrize(("method", "key", "message"), [
    ({"name": "M", "algorithm": "cdsgd", "topology": {"agents": 4}},
     "methods[0].topology.agents", "has the scenario's agents"),
    ({"name": "M", "algorithm": "cdsgd", "topology": {"kind": "spiral"}},
     "methods[0].topology.kind", "ring"),
    ({"name": "M", "algorithm": "cdsgd", "topology": {"kind": "directed_ring"}},
     "methods[0]", "use algorithm: sgp (push-sum)"),
])
def test_validate_names_the_method_whose_graph_is_wrong(tmp_path: Path, method: dict,
                                                         key: str, message: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps({"name": "s", "dataset": {"name": "digits"},
                                "topology": {"kind": "ring", "agents": 5},
                                "training": {"rounds": 3}, "methods": [method]}))
    result = CliRunner().invoke(cli.cli, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert key in text and message in text


def test_a_problem_names_the_method_at_its_place_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps({
        "name": "s", "dataset": {"name": "digits"},
        "topology": {"kind": "erdos_renyi", "agents": 6, "p": 0.6},
        "training": {"rounds": 3},
        "methods": [{"name": "A", "algorithm": "cdsgd"}, {"name": "B", "algorithm": "cdsgd"},
                    {"name": "C", "algorithm": "cdsgd", "topology": {"kind": "directed_ring"}}]}))
    result = CliRunner().invoke(cli.cli, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "methods[2]" in text and "methods[0]" not in text
    assert text.count("needs a doubly stochastic Π") == 1
    # the scenario's p belongs to its own kind: a method naming another kind starts afresh
    assert "'p'" not in text


def test_a_swept_topology_key_that_a_method_sets_itself_is_not_in_its_label() -> None:
    scenario = tiny_scenario(
        topology={"kind": "ring", "agents": 8},
        methods=[{"name": "gossip", "algorithm": "cdsgd"},
                 {"name": "push", "algorithm": "sgp",
                  "topology": {"kind": "directed_exponential"}}],
        sweep={"topology.kind": ["ring", "torus"]})
    specs = expand(scenario)
    labels = sorted(spec.label for spec in specs)
    assert labels == ["gossip kind=ring", "gossip kind=torus", "push"]
    push = next(spec for spec in specs if spec.method == "push")
    assert push.shared == ("topology.kind",) and push.own_graph_index == 1


def test_the_topology_command_lists_and_shows_a_method_s_own_graph() -> None:
    path = Path(__file__).parents[1] / "scenarios" / "async" / "stragglers.yaml"
    listed = CliRunner().invoke(cli.cli, ["topology", str(path)])
    assert listed.exit_code == 0, listed.output
    assert "'SGP directed exp' (directed_exponential)" in " ".join(listed.output.split())
    shown = CliRunner().invoke(cli.cli, ["topology", str(path), "--json",
                                         "--method", "CDSGD one-peer exp"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output[shown.output.index("{"):])
    assert data["kind"] == "exponential" and data["period"] == 4
    assert data["product_lambda2"] == pytest.approx(0.0, abs=1e-12)
    missing = CliRunner().invoke(cli.cli, ["topology", str(path), "--method", "nope"])
    assert missing.exit_code == 2 and "has no method 'nope'" in missing.output
