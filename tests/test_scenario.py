"""Scenario files: malformed ones give messages naming the file, the key and the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from decentral_bench import scenario as scenario_file
from decentral_bench.scenario import ScenarioError

REPO = Path(__file__).resolve().parents[1]

VALID = """\
name: ok
topology: {kind: ring, agents: 4}
training: {rounds: 3}
methods:
  - {name: CDSGD, algorithm: cdsgd}
  - {name: FedAvg, algorithm: fedavg, fraction: 0.5, local_epochs: 2}
"""

# (file text, expected key path, expected words in the message)
MALFORMED = [
    ("name: x\ntopology: {agents: many}\nmethods: [{name: a, algorithm: cdsgd}]\n",
     "topology.agents", "valid integer"),
    ("name: x\ntopology: {agents: 0}\nmethods: [{name: a, algorithm: cdsgd}]\n",
     "topology.agents", "greater than or equal to 1"),
    ("name: x\ntopology: {agents: 4, colour: red}\nmethods: [{name: a, algorithm: cdsgd}]\n",
     "topology", "unknown key 'colour'; allowed keys here: agents, cols, degree, edges, k, kind"),
    ("name: x\nmethods: [{name: a, algorithm: cdsgd}]\nextra_section: 1\n",
     "(top level)", "unknown key 'extra_section'; allowed keys here: adversaries, dataset"),
    # A misspelt key names the key it is closest to.
    ("name: x\ntraining: {batch_sise: 8}\nmethods: [{name: a, algorithm: cdsgd}]\n",
     "training", "unknown key 'batch_sise' (did you mean 'batch_size'?); allowed keys"),
    ("name: x\nmethods: [{name: a, algorithm: cdmsgd, momentun: 0.5}]\n",
     "methods[0]", "unknown key 'momentun' (did you mean 'momentum'?)"),
    ("name: x\ntopologie: {agents: 4}\nmethods: [{name: a, algorithm: cdsgd}]\n",
     "(top level)", "unknown key 'topologie' (did you mean 'topology'?)"),
    ("topology: {agents: 4}\nmethods: [{name: a, algorithm: cdsgd}]\n",
     "name", "missing required key"),
    ("name: x\nmethods: []\n", "methods", "list at least one method"),
    ("name: x\n", "methods", "missing required key"),
    ("name: x\nmethods: [{name: a, algorithm: dsgd}]\n",
     "methods[0].algorithm", "'bulyan' or 'centralized_sgd' (got 'dsgd')"),
    ("name: x\nmethods: [{name: a, algorithm: cdsgd, fraction: 0.5}]\n",
     "methods[0]", "'multikrum' or 'bulyan' only, not 'cdsgd'"),
    ("name: x\nmethods: [{name: a, algorithm: fedavg, fraction: 1.5}]\n",
     "methods[0].fraction", "less than or equal to 1"),
    ("name: x\nmethods: [{name: a, algorithm: cdsgd}, {name: a, algorithm: fedavg}]\n",
     "methods", "method names must be unique; repeated: a"),
    ("name: x\ntraining: {lr: -0.1}\nmethods: [{name: a, algorithm: cdsgd}]\n",
     "training.lr", "greater than 0"),
    ("name: x\nmethods: [{name: a, algorithm: cdsgd, momentum: 0.9}]\n",
     "methods[0]",
     "'momentum' applies to algorithm 'cdmsgd', 'dsgd_atc', 'sgp', 'gradient_tracking', "
     "'qg_dsgdm' or 'choco' only"),
    ("name: x\nmethods: [{name: a, algorithm: cdmsgd, variant: adam}]\n",
     "methods[0].variant", "'nesterov' or 'polyak'"),
    ("name: x\ntraining: {lr_schedule: diminishing, epsilon: 0.4}\n"
     "methods: [{name: a, algorithm: cdsgd}]\n", "training.epsilon", "greater than 0.5"),
    ("name: x\ntraining: {lr_schedule: diminishing}\nmethods: [{name: a, algorithm: cdsgd}]\n",
     "training", "needs epsilon"),
    ("name: x\ntopology: {kind: moebius}\nmethods: [{name: a, algorithm: cdsgd}]\n",
     "topology.kind", "'complete', 'ring', 'path'"),
    ("name: x\ndataset: {name: imagenet}\nmethods: [{name: a, algorithm: cdsgd}]\n",
     "dataset.name", "'digits'"),
    ("name: x\ntraining: [1, 2]\nmethods: [{name: a, algorithm: cdsgd}]\n",
     "training", "valid dictionary"),
    # Compressed gossip and CHOCO-SGD
    ("name: x\nmethods: [{name: a, algorithm: choco}]\n", "methods[0]",
     "algorithm 'choco' needs compression"),
    ("name: x\nmethods: [{name: a, algorithm: cdsgd, compression: {kind: top_k, "
     "fraction: 1.5}}]\n", "methods[0].compression.fraction", "less than or equal to 1"),
    ("name: x\nmethods: [{name: a, algorithm: cdsgd, compression: {kind: random_k, "
     "fraction: 0}}]\n", "methods[0].compression.fraction", "greater than 0"),
    ("name: x\nmethods: [{name: a, algorithm: cdsgd, compression: {kind: qsgd, bits: 0}}]\n",
     "methods[0].compression.bits", "greater than or equal to 1"),
    ("name: x\nmethods: [{name: a, algorithm: cdsgd, compression: {kind: qsgd, bits: 17}}]\n",
     "methods[0].compression.bits", "less than or equal to 16"),
    ("name: x\nmethods: [{name: a, algorithm: cdsgd, compression: qsgd}]\n",
     "methods[0].compression", "compressor qsgd needs bits"),
    ("name: x\nmethods: [{name: a, algorithm: cdsgd, compression: {kind: sign, "
     "fraction: 0.1}}]\n", "methods[0].compression",
     "'fraction' applies to compressor 'top_k' or 'random_k' only, not 'sign'"),
    ("name: x\nmethods: [{name: a, algorithm: choco, compression: sign, "
     "consensus_step_size: 1.5}]\n", "methods[0].consensus_step_size",
     "expected a number in (0, 1] or 'auto' (got 1.5)"),
    ("name: x\nmethods: [{name: a, algorithm: choco, compression: sign, "
     "consensus_step_size: 0}]\n", "methods[0].consensus_step_size",
     "expected a number in (0, 1] or 'auto' (got 0)"),
    ("name: x\nmethods: [{name: a, algorithm: fedavg, compression: sign}]\n", "methods[0]",
     "'compression' applies to algorithm 'cdsgd', 'cdmsgd' or 'choco' only, not 'fedavg'"),
    ("name: x\nmethods: [{name: a, algorithm: centralized_sgd, compression: sign}]\n",
     "methods[0]", "'compression' applies to algorithm 'cdsgd', 'cdmsgd' or 'choco' only, "
     "not 'centralized_sgd'"),
    ("name: x\nmethods: [{name: a, algorithm: cdsgd, consensus_step_size: 0.5}]\n",
     "methods[0]", "'consensus_step_size' applies to algorithm 'choco' only"),
    ("name: x\nmethods: [{name: a, algorithm: cdsgd, compression: sign, "
     "aggregation: median}]\n", "methods[0]", "remove aggregation or compression"),
    ("name: x\ntopology: {kind: ring, agents: 4}\nadversaries: {count: 1, attack: sign_flip}"
     "\nmethods: [{name: a, algorithm: choco, compression: sign}]\n",
     "methods[0].compression", "compressed gossip does not run with adversaries"),
    ("name: x\nmethods: [{name: a, algorithm: cdsgd, compression: sign, "
     "consensus_control: {mode: exact}}]\n", "methods[0]",
     "remove consensus_control or compression"),
    ("name: x\ntraining: {local_steps: 2}\nmethods: [{name: a, algorithm: choco, "
     "compression: sign}]\n", "methods[0]",
     "gossips after every minibatch step, but training.local_steps is 2"),
    ("name: x\nfailures: {links: {drop_probability: 0.1}}\nmethods: [{name: a, "
     "algorithm: choco, compression: sign}]\n", "methods[0]",
     "failures.links drops some: run it without failures"),
    ("- just\n- a list\n", "", "must hold a mapping"),
    ("name: x\nmethods: [{name: a, algorithm: cdsgd\n", "", "not valid YAML: line"),
]


def test_valid_file_parses(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(VALID)
    parsed = scenario_file.load(path)
    assert parsed.topology.agents == 4
    assert parsed.methods[1].fraction == 0.5
    assert parsed.training.lr == 0.1  # default filled in


@pytest.mark.parametrize(("text", "key", "words"), MALFORMED)
def test_malformed_file_names_file_key_and_expectation(tmp_path: Path, text: str, key: str,
                                                       words: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as caught:
        scenario_file.load(path)
    message = str(caught.value)
    assert message.startswith(str(path))
    assert any(found_key == key for found_key, _ in caught.value.problems) or key == "", message
    assert words in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="file not found"):
        scenario_file.load(tmp_path / "nowhere.yaml")


def test_validate_exits_2_without_traceback(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(VALID)
    bad.write_text(MALFORMED[1][0])
    done = subprocess.run([sys.executable, "-m", "decentral_bench", "validate", str(good),
                           str(bad)], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert f"{bad}: topology.agents:" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert f"ok: {good}" in done.stdout


def test_shipped_scenarios_are_valid() -> None:
    files = sorted((REPO / "scenarios").rglob("*.yaml"))
    assert files
    for path in files:
        scenario_file.load(path)


def test_json_schema_lists_sections() -> None:
    schema = scenario_file.json_schema()
    assert {"dataset", "topology", "training", "methods"} <= set(schema["properties"])
