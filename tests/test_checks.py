"""`validate` catches what `run` would before training (every sweep combination,
partitions, files, device); non-finite numbers are refused; an internal error is one
line and a traceback file."""

from __future__ import annotations

import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from decentral_bench.cli import entry as cli
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.run.checks import check_scenario
from decentral_bench.run.errors import EXIT_ENVIRONMENT, EXIT_INTERNAL
from decentral_bench.scenario import ScenarioError, export, load

BASE = """\
name: checked
model: {name: mlp, hidden: [8]}
topology: {kind: ring, agents: 5}
training: {rounds: 2, batch_size: 16}
methods: [{name: CDSGD, algorithm: cdsgd}, {name: SGD, algorithm: centralized_sgd}]
"""

NON_FINITE = [
    ("training: {lr: .inf}", "training.lr"),
    ("training: {lr: .nan}", "training.lr"),
    ("training: {weight_decay: .inf}", "training.weight_decay"),
    ("training: {lr_schedule: diminishing, epsilon: .nan}", "training.epsilon"),
    ("dataset: {partition: {kind: dirichlet, alpha: .inf}}", "dataset.partition.alpha"),
    ("dataset: {test_fraction: .nan}", "dataset.test_fraction"),
    ("topology: {kind: erdos_renyi, agents: 5, p: .nan}", "topology.p"),
    ("topology: {kind: erdos_renyi, agents: 5, target_lambda2: -.inf}",
     "topology.target_lambda2"),
    ("failures: {links: {drop_probability: .nan}}", "failures.links.drop_probability"),
]


@pytest.mark.parametrize(("section", "key"), NON_FINITE)
def test_non_finite_numbers_are_refused_naming_the_key(tmp_path: Path, section: str,
                                                       key: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nmethods: [{name: a, algorithm: cdsgd}]\n" + section + "\n")
    with pytest.raises(ScenarioError) as caught:
        load(path)
    assert [found for found, _ in caught.value.problems] == [key]
    assert "finite number" in str(caught.value)


def test_non_finite_method_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nmethods: [{name: a, algorithm: cdmsgd, momentum: .nan},"
                    " {name: b, algorithm: fedavg, fraction: .inf}]\n")
    with pytest.raises(ScenarioError) as caught:
        load(path)
    assert {found for found, _ in caught.value.problems} == {"methods[0].momentum",
                                                            "methods[1].fraction"}


def _file(tmp_path: Path, extra: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(BASE + extra)
    return path


@pytest.mark.parametrize(("extra", "key", "words"), [
    ("dataset: {partition: {kind: by_size, sizes: [1, 2]}}\n", "dataset.partition",
     "2 sizes given for 5 agents"),
    ("dataset: {partition: {kind: shards, classes_per_agent: 11}}\n", "dataset.partition",
     "classes_per_agent 11 exceeds the 10 classes"),
    ("sweep: {topology.agents: [2, -4]}\n", "sweep",
     "'topology.agents' value 2 (-4): Input should be greater than or equal to 1"),
    ("sweep: {dataset.partition: [iid, {kind: shards, classes_per_agent: 12}]}\n",
     "sweep (dataset.partition={'kind': 'shards', 'classes_per_agent': 12}): "
     "dataset.partition", "classes_per_agent 12 exceeds the 10 classes"),
    ("dataset: {name: fashion_mnist, root: no_such_folder}\n", "dataset",
     "Fashion-MNIST not found in"),
    ("sweep: {topology.kind: [ring, torus]}\n", "sweep (topology.kind='torus'): topology",
     "torus"),
])
def test_run_time_problems_are_found_before_running(tmp_path: Path, extra: str, key: str,
                                                    words: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        check_scenario(_file(tmp_path, extra))
    problems = dict(caught.value.problems)
    assert key in problems, caught.value.problems
    assert words in problems[key]


def test_an_unreadable_data_folder_names_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "fashion"
    folder.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (folder / name).write_text("not gzip")
    with pytest.raises(ScenarioError) as caught:
        check_scenario(_file(tmp_path, f"dataset: {{name: fashion_mnist, root: {folder}}}\n"))
    assert caught.value.problems == [
        ("dataset", f"cannot read {folder / 'train-images-idx3-ubyte.gz'}: "
                    "Not a gzipped file (b'no')")]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as caught:
        check_scenario(_file(tmp_path, "resources: {device: cuda}\n"))
    assert caught.value.problems == [
        ("resources.device", "is 'cuda' but this machine has no CUDA device; use 'auto' or "
                             "'cpu'")]


def test_validate_exits_2_naming_file_and_key_for_each_problem(tmp_path: Path) -> None:
    good = _file(tmp_path, "", "good.yaml")
    sweep = _file(tmp_path, "sweep: {topology.agents: [2, -4]}\n", "sweep.yaml")
    sizes = _file(tmp_path, "dataset: {partition: {kind: by_size, sizes: [1, 2]}}\n",
                  "sizes.yaml")
    done = CliRunner().invoke(cli.cli, ["validate", str(good), str(sweep), str(sizes)])
    assert done.exit_code == 2
    assert f"ok: {good}" in done.stdout
    assert f"error: {sweep}: sweep: 'topology.agents' value 2 (-4):" in done.stderr
    assert f"error: {sizes}: dataset.partition: by_size: 2 sizes given for 5 agents" \
        in done.stderr


def test_an_internal_error_is_one_line_and_a_traceback_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        main_exit: Callable[..., tuple[object, str]]) -> None:
    def broken() -> str:
        raise RuntimeError("the schema broke\nsecond line")

    monkeypatch.setattr(export, "schema_text", broken)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code, message = main_exit("schema")
    assert code == EXIT_INTERNAL
    assert message.count("\n") == 1
    assert "internal error: RuntimeError: the schema broke (full traceback in" in message
    [written] = tmp_path.glob("decentral-bench-error-*.txt")
    assert "Traceback" in written.read_text() and "second line" in written.read_text()
    with pytest.raises(RuntimeError, match="the schema broke"):
        main_exit("--debug", "schema")


def test_a_store_that_cannot_be_opened_is_one_line_within_seconds(
        tmp_path: Path, main_exit: Callable[..., tuple[object, str]]) -> None:
    folder_as_file = tmp_path / "a-file"
    folder_as_file.write_text("")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{probe.getsockname()[1]}"  # closed: nothing listens
    scenario = _file(tmp_path, "")
    for uri, words in ((f"sqlite:///{folder_as_file}/mlflow.db", "cannot create the folder"),
                       (f"sqlite:///{tmp_path}", "which is not a file"),
                       (nobody, "cannot reach the MLflow tracking server")):
        started = time.monotonic()
        code, message = main_exit("run", str(scenario), "--tracking-uri", uri)
        assert time.monotonic() - started < 30
        assert code == EXIT_ENVIRONMENT
        lines = message.strip().splitlines()
        assert len(lines) == 1 and words in lines[0] and uri in lines[0], message
    code, message = main_exit("report", "checked", "--tracking-uri", nobody)
    assert code == EXIT_ENVIRONMENT and "cannot reach" in message


def _nesterov_on(tmp_path: Path, matrix: list[list[float]], method: str) -> Path:
    (tmp_path / "pi.csv").write_text("\n".join(",".join(map(str, row)) for row in matrix))
    path = tmp_path / "momentum.yaml"
    path.write_text(f"""\
name: momentum
model: {{name: mlp, hidden: [8]}}
topology: {{kind: complete, agents: 2, mixing: matrix, matrix_file: pi.csv}}
training: {{rounds: 2, batch_size: 16}}
methods: [{method}]
""")
    return path


# Π = [[0.2, 0.8], [0.8, 0.2]]: λN = −0.6, below −1/(1 + 2μ) for every μ > 1/3.
SWAPPING = [[0.2, 0.8], [0.8, 0.2]]


def test_nesterov_momentum_that_diverges_on_the_graph_is_refused(tmp_path: Path) -> None:
    path = _nesterov_on(tmp_path, SWAPPING, "{name: M, algorithm: cdmsgd, momentum: 0.95, "
                                          "momentum_buffer: iterates}")
    with pytest.raises(ScenarioError) as caught:
        check_scenario(path)
    [(key, message)] = caught.value.problems
    assert key == "methods[0]"
    assert "λN = -0.6000" in message and "−1/(1 + 2μ) = -0.3448" in message
    assert "lazy: true" in message and "momentum_buffer: local" in message
    done = CliRunner().invoke(cli.cli, ["validate", str(path)])
    assert done.exit_code == 2 and "methods[0]" in done.output


@pytest.mark.parametrize("method", [
    "{name: M, algorithm: cdmsgd, momentum: 0.95, variant: polyak}",
    "{name: M, algorithm: cdmsgd, momentum: 0.95, momentum_buffer: local}",
    "{name: M, algorithm: cdmsgd, momentum: 0.2, momentum_buffer: iterates}",  # −0.714
    "{name: M, algorithm: cdsgd}",
])
def test_stable_rules_on_the_same_graph_pass(tmp_path: Path, method: str) -> None:
    """Each passes because its rule is stable down to an eigenvalue below Π's λN = −0.6."""
    [spec] = check_scenario(_nesterov_on(tmp_path, SWAPPING, method))[1]
    plan = MethodPlan.of(spec.scenario, "M")
    assert plan.topology.lambda_n == pytest.approx(-0.6, abs=1e-12)
    lowest = plan.definition.lowest_eigenvalue(plan.options)
    assert lowest is None or lowest.value < -0.6


@pytest.mark.parametrize(("momentum", "grows"), [(0.95, True), (0.2, False)])
def test_the_bound_is_where_nesterovs_disagreement_starts_to_grow(momentum: float,
                                                                   grows: bool) -> None:
    """The real update rule, no gradient, on Π with λN = −0.6: the agents' disagreement
    grows round after round exactly when λN ≤ −1/(1 + 2μ)."""
    from strategies.cdmsgd import Nesterov

    pi = torch.tensor(SWAPPING, dtype=torch.float64)
    rule = Nesterov(momentum=momentum)
    start = [torch.tensor([[1.0], [-1.0]], dtype=torch.float64)]

    def no_gradient(point: list[torch.Tensor], step: int) -> tuple[list[torch.Tensor], float]:
        return [torch.zeros_like(p) for p in point], 0.0

    state = rule.start(start, no_gradient, 0.1)
    spread = []
    for _ in range(200):
        mixed = [pi @ point for point in rule.message(state)]
        state, _ = rule.advance(state, mixed, torch.diagonal(pi), no_gradient, 0.1, 0)
        spread.append(float((state["x"][0][0] - state["x"][0][1]).abs()))
    assert (spread[-1] > 1e3 * spread[0]) is grows
    assert (spread[-1] < 1e-3 * spread[0]) is not grows


def test_nesterov_that_barely_contracts_on_the_graph_is_a_warning_not_an_error(
        tmp_path: Path) -> None:
    """The Metropolis 32-ring (λN = −1/3) at μ = 0.9: the iterates form runs, but its slowest
    disagreement mode shrinks by only 5.1 % a round, so validate warns and exits 0; the
    local-velocity form (the default) draws no warning."""
    path = tmp_path / "ring.yaml"
    path.write_text(BASE.replace("agents: 5", "agents: 32").replace(
        "methods: [{name: CDSGD, algorithm: cdsgd}, {name: SGD, algorithm: centralized_sgd}]",
        "methods: [{name: iterates, algorithm: cdmsgd, momentum_buffer: iterates},\n"
        "          {name: local, algorithm: cdmsgd}]"))
    _, _, warnings = check_scenario(path)
    [(key, message)] = warnings
    assert key == "methods[0]"
    assert "λN = -0.3333" in message and "−1/(1 + 2μ) = -0.3571" in message
    assert "by only 5.1% a round (|z| = 0.949" in message
    done = CliRunner().invoke(cli.cli, ["validate", str(path)])
    assert done.exit_code == 0
    assert "warning" in done.output and "methods[0]" in done.output
    assert "methods[1]" not in done.output


def test_a_robust_rule_in_cdsgds_form_is_a_warning_and_in_dsgd_atcs_is_not(
        tmp_path: Path) -> None:
    """The median under CDSGD (combine then adapt) runs, with a warning that names the
    method's aggregation and the form to use; under dsgd_atc it draws none, nor does
    CDSGD's plain mixing."""
    path = tmp_path / "robust.yaml"
    path.write_text(BASE.replace(
        "methods: [{name: CDSGD, algorithm: cdsgd}, {name: SGD, algorithm: centralized_sgd}]",
        "methods: [{name: plain, algorithm: cdsgd},\n"
        "          {name: cta, algorithm: cdsgd, aggregation: median},\n"
        "          {name: atc, algorithm: dsgd_atc, aggregation: median}]"))
    _, _, warnings = check_scenario(path)
    [(key, message)] = warnings
    assert key == "methods[1].aggregation"
    assert "'cta' runs median in cdsgd's combine-then-adapt form" in message
    assert "algorithm: dsgd_atc" in message
    done = CliRunner().invoke(cli.cli, ["validate", str(path)])
    assert done.exit_code == 0 and "methods[1].aggregation" in done.output


@pytest.mark.parametrize("momentum", [0.5, 0.9, 0.95])
def test_the_warned_modulus_is_the_rate_the_real_rule_shrinks_the_last_mode(
        momentum: float) -> None:
    """The real Nesterov rule on the iterates, no gradient, on the 32-ring started along
    Π's last eigenvector: the disagreement shrinks per round by the modulus `validate`
    quotes, the larger root of z² − λN(1 + μ)z + λNμ (written out with numpy.roots)."""
    from strategies.cdmsgd import Nesterov, nesterov_disagreement_modulus

    agents = 32
    ring = np.zeros((agents, agents))
    for j in range(agents):
        ring[j, j] = ring[j, (j + 1) % agents] = ring[j, (j - 1) % agents] = 1 / 3
    lambda_n = -1 / 3
    roots = np.roots([1.0, -lambda_n * (1 + momentum), lambda_n * momentum])
    modulus = nesterov_disagreement_modulus(lambda_n, momentum)
    assert modulus == pytest.approx(max(abs(roots)), rel=1e-12)
    pi = torch.tensor(ring)
    alternating = torch.tensor([(-1.0) ** j for j in range(agents)], dtype=torch.float64)
    rule = Nesterov(momentum=momentum)

    def no_gradient(point: list[torch.Tensor], step: int) -> tuple[list[torch.Tensor], float]:
        return [torch.zeros_like(p) for p in point], 0.0

    state = rule.start([alternating[:, None]], no_gradient, 0.1)
    sizes = []
    for _ in range(120):
        mixed = [pi @ point for point in rule.message(state)]
        state, _ = rule.advance(state, mixed, torch.diagonal(pi), no_gradient, 0.1, 0)
        sizes.append(float(state["x"][0].norm()))
    assert sizes[-1] / sizes[-2] == pytest.approx(modulus, rel=1e-6)


@pytest.mark.parametrize("lambda_n", [-0.9, -0.6, -0.3571, -1 / 3, -0.2, 0.0, 0.5, 0.987])
def test_the_modulus_reaches_one_exactly_at_the_divergence_bound(lambda_n: float) -> None:
    from strategies.cdmsgd import nesterov_disagreement_modulus, nesterov_divergence_bound

    momentum = 0.9
    modulus = nesterov_disagreement_modulus(lambda_n, momentum)
    assert (modulus >= 1.0) is (lambda_n <= nesterov_divergence_bound(momentum))
    assert nesterov_disagreement_modulus(nesterov_divergence_bound(momentum), momentum) == \
        pytest.approx(1.0, abs=1e-12)
