"""The parts of a Flower deployment that run without one: node discovery's verdicts, the
ClientApp's node config, the agents' data cache, the throw-away credentials, the prompt
SuperNode's pauses, what `deploy-local` accepts, and a stopped run marked KILLED."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_scenario
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key
from flwr.app import ConfigRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords
from mlflow.tracking import MlflowClient

from decentral_bench.engines.base import EventSink, FinalParameters, ReportSink, RunStopped
from decentral_bench.engines.flower import client_app, supernode
from decentral_bench.engines.flower.arrays import from_record, to_record
from decentral_bench.engines.flower.credentials import generate_credentials
from decentral_bench.engines.flower.deploy import absolute_tracking_uri, deployable
from decentral_bench.engines.flower.grid import node_wait
from decentral_bench.engines.flower.nodes import Discovery, NodeWait
from decentral_bench.engines.flower.simulation import MainThreadCalls
from decentral_bench.experiment.agent import AgentData
from decentral_bench.experiment.data_cache import cached_agent_data, data_key
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.run.runner import record_method, stop_reason
from decentral_bench.scenario import ScenarioError
from strategies.protocol import IDENTIFY_TYPE, IDENTITY_KEY


def _identity_reply(node: int, partition: int | None) -> Message:
    query = Message(RecordDict(), dst_node_id=node, message_type=IDENTIFY_TYPE)
    if partition is None:
        return Message(Error(code=0, reason="this node has no partition-id"), reply_to=query)
    return Message(RecordDict({IDENTITY_KEY: ConfigRecord({"partition-id": partition})}),
                   reply_to=query)


@pytest.mark.usefixtures("task_identity")
def test_discovery_leaves_out_nodes_that_cannot_serve_an_agent_and_says_why() -> None:
    skipped: list[tuple[int, str]] = []
    discovery = Discovery(agents=3, on_skip=lambda node, why: skipped.append((node, why)))
    discovery.place(11, _identity_reply(11, 0), 60.0)
    discovery.place(12, _identity_reply(12, 0), 60.0)  # a second node for agent 0
    discovery.place(13, _identity_reply(13, None), 60.0)  # no partition-id
    discovery.place(14, _identity_reply(14, 7), 60.0)  # not an agent of 3
    discovery.place(15, None, 60.0)  # never answered
    discovery.place(16, _identity_reply(16, 2), 60.0)
    assert discovery.node_of_agent == {0: 11, 2: 16}
    assert discovery.missing == [1]
    reasons = dict(skipped)
    assert reasons[12] == "partition-id 0 is already node 11's"
    assert reasons[13] == "this node has no partition-id"
    assert reasons[14].startswith("partition-id 7 is not an agent of this topology (0..2)")
    assert reasons[15] == "did not answer the identity query within 60 s"
    error = str(discovery.shortage(6, NodeWait(timeout=5.0, advice="start more nodes")))
    assert "after waiting 5 s agents [1] have no node (6 nodes connected" in error
    assert "node 12: partition-id 0 is already node 11's" in error
    assert error.endswith("; start more nodes")


@pytest.mark.usefixtures("task_identity")
def test_a_node_without_a_usable_partition_id_answers_with_an_error() -> None:
    query = Message(RecordDict(), dst_node_id=1, message_type=IDENTIFY_TYPE)
    for node_config, expected in (({}, "no partition-id in its node config"),
                                  ({"partition-id": "x"}, "'x' is not an agent index")):
        context = Context(run_id=1, node_id=1, node_config=node_config, state=RecordDict(),
                          run_config={})
        with pytest.raises(ValueError, match=expected):
            client_app.identify(query, context)
    context = Context(run_id=1, node_id=1, node_config={"partition-id": 2}, state=RecordDict(),
                      run_config={})
    reply = client_app.identify(query, context)
    assert reply.content.config_records[IDENTITY_KEY]["partition-id"] == 2


def test_the_node_config_thread_count_overrides_the_message(monkeypatch: pytest.MonkeyPatch,
                                                            ) -> None:
    chosen: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", chosen.append)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    client_app._limit_threads(ConfigRecord({"threads": 2}), {"threads": 3}, deterministic=False)
    client_app._limit_threads(ConfigRecord({"threads": 2}), {}, deterministic=False)
    assert chosen == [3, 2]


def test_the_data_cache_gives_back_what_the_data_set_gives(tmp_path: Path) -> None:
    plan = MethodPlan.of(tiny_scenario(training__eval_samples=50), "CDSGD")
    fresh = AgentData.prepare(plan, 1)
    written = cached_agent_data(plan, 1, tmp_path)
    files = sorted(p.name for p in (tmp_path / data_key(plan)).iterdir())
    assert files == ["agent-1.pt", "shared.pt"]
    read = cached_agent_data(plan, 1, tmp_path)
    assert fresh.common is not None  # the default: training loss on common samples
    for made in (written, read):
        assert made.common is not None
        for got, expected in ((made.features, fresh.features), (made.labels, fresh.labels),
                              (made.test[0], fresh.test[0]), (made.common[1], fresh.common[1])):
            assert torch.equal(got, expected)
        assert (made.input_shape, made.num_classes) == (fresh.input_shape, fresh.num_classes)
    assert len(read.test[1]) == len(read.common[1]) == 50
    (tmp_path / data_key(plan) / "agent-1.pt").write_bytes(b"torn")  # a damaged file is redone
    assert torch.equal(cached_agent_data(plan, 1, tmp_path).features, fresh.features)
    other_seed = MethodPlan.of(tiny_scenario(training__seed=4), "CDSGD")
    other_lr = MethodPlan.of(tiny_scenario(training__lr=0.5), "CDSGD")
    assert data_key(other_seed) != data_key(plan) != data_key(other_lr)
    assert data_key(other_lr) == data_key(MethodPlan.of(tiny_scenario(), "CDSGD"))
    own = MethodPlan.of(tiny_scenario(training__train_evaluation="own"), "CDSGD")
    assert data_key(own) != data_key(plan) and AgentData.prepare(own, 0).common is None


def test_the_credentials_make_a_chain_for_loopback_and_openssh_node_keys(tmp_path: Path,
                                                                          ) -> None:
    made = generate_credentials(tmp_path, nodes=2)
    ca = x509.load_pem_x509_certificate(made.ca_certificate.read_bytes())
    server = x509.load_pem_x509_certificate(made.server_certificate.read_bytes())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    for node in range(2):
        key = load_ssh_private_key(made.node_keys[node].read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"
        assert made.public_key(node).read_text().startswith("ecdsa-sha2-nistp384 ")
    assert made.server_key.stat().st_mode & 0o077 == 0


def test_the_prompt_supernode_fits_the_installed_flower_and_backs_off_when_idle(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert supernode.patch_mismatches() == []
    slept: list[float] = []
    monkeypatch.setattr(supernode.time, "sleep", slept.append)
    clock = supernode.PromptClock()
    for _ in range(7):
        clock.sleep(3)  # Flower's pause after a look that found nothing
    clock.sleep(0.5)  # waiting for a reply: a message arrived
    clock.sleep(3)
    assert slept == [0.01, 0.02, 0.04, 0.08, 0.16, 0.25, 0.25, 0.005, 0.01]
    assert clock.monotonic == time.monotonic  # everything else is the time module's


def test_deploy_local_takes_one_configuration_and_an_absolute_store(tmp_path: Path) -> None:
    scenario = tiny_scenario(methods=[{"name": "CDSGD", "algorithm": "cdsgd"}])
    ready = deployable(scenario, "s.yaml", "CDSGD", "sqlite:///runs/mlflow.db")
    assert ready.tracking.uri == f"sqlite:///{Path.cwd() / 'runs' / 'mlflow.db'}"
    with pytest.raises(ScenarioError, match=r"s.yaml: methods: no method 'FedAvg' \(it has"):
        deployable(scenario, "s.yaml", "FedAvg")
    seeded = tiny_scenario(training__seeds=[0, 1])
    with pytest.raises(ScenarioError, match=r"training\.seeds: a deployment runs one"):
        deployable(seeded, "s.yaml", "CDSGD")
    assert absolute_tracking_uri("sqlite:////abs/m.db", tmp_path) == "sqlite:////abs/m.db"
    assert absolute_tracking_uri("http://host:5000", tmp_path) == "http://host:5000"
    assert absolute_tracking_uri("mlruns", tmp_path) == str(tmp_path / "mlruns")


def test_main_thread_calls_run_there_and_hand_back_results_and_errors() -> None:
    calls = MainThreadCalls()
    ran_on: list[str] = []

    def record(value: int) -> int:
        ran_on.append(threading.current_thread().name)
        if value < 0:
            raise ValueError("negative")
        return 2 * value

    results: list[object] = []

    def engine() -> None:
        results.append(calls.wrap(record)(21))
        try:
            calls.wrap(record)(-1)
        except ValueError as error:
            results.append(str(error))
        calls.wake()

    thread = threading.Thread(target=engine, name="engine")
    thread.start()
    calls.serve(thread)
    assert results == [42, "negative"]
    assert ran_on == [threading.current_thread().name] * 2
    calls.close()
    with pytest.raises(RuntimeError, match="stopped"):
        calls.wrap(record)(1)


class StoppedEngine:
    """An engine stopped from outside after one round (as `flwr stop` or SIGTERM do)."""

    name = "stopped"
    deployed = False

    def __init__(self, stop: BaseException) -> None:
        self.stop = stop

    def run(self, plan: MethodPlan, report: ReportSink, on_event: EventSink) -> FinalParameters:
        time.sleep(0.01)
        raise self.stop


def test_a_run_stopped_from_outside_is_killed_with_its_reason(tracking_uri: str) -> None:
    """SIGTERM (how `flwr stop` ends a ServerApp) raises SystemExit inside the engine."""
    plan = MethodPlan.of(tiny_scenario(tracking={"experiment": "stops", "uri": tracking_uri}),
                         "CDSGD")
    with pytest.raises(SystemExit):
        record_method(plan, StoppedEngine(SystemExit(0)))
    client = MlflowClient(tracking_uri=tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name("stops").experiment_id])
    assert run.info.status == "KILLED"
    assert run.data.tags["error"].startswith("the process was stopped (exit code 0)")
    assert stop_reason(RunStopped("the Flower run was stopped")) == "the Flower run was stopped"


def test_a_point_travels_as_one_array_that_fedavg_averages_layer_by_layer() -> None:
    """One object per point in Flower's object protocol, not two per layer."""
    layers = [np.arange(12, dtype=np.float32).reshape(3, 4), np.ones(4, np.float32),
              np.full((), 2.0, np.float32)]
    record = to_record(layers)
    assert list(record) == ["layers:3x4|4|"]
    for got, original in zip(from_record(record), layers, strict=True):
        np.testing.assert_array_equal(got, original)
        assert got.shape == original.shape
    other = to_record([2 * layer for layer in layers])
    weighted = [RecordDict({"arrays": rec, "metrics": MetricRecord({"num-examples": n})})
                for rec, n in ((record, 1), (other, 3))]
    average = aggregate_arrayrecords(weighted, "num-examples")  # FedAvg's own averaging
    for got, original in zip(from_record(average), layers, strict=True):
        np.testing.assert_allclose(got, 0.25 * original + 0.75 * 2 * original, rtol=1e-6)


def test_the_wait_for_nodes_comes_from_the_run_config_with_advice_for_a_deployment() -> None:
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),
                      run_config={"wait-for-nodes": 120})
    wait = node_wait(None, context, 3)  # a deployment's grid (not Flower's in-memory one)
    assert wait.timeout == 120.0
    assert "--node-config \"partition-id=J num-partitions=3\"" in wait.advice
    assert "simulation-config" not in wait.advice
