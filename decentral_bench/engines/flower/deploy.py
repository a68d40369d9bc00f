"""A real Flower deployment on this machine (`decentral-bench deploy-local`).

`LocalFederation` starts, on 127.0.0.1 only and on free ports, a
`flower-superlink` and, per agent, a SuperNode (`flower-supernode` with prompt
pauses, `decentral_bench.engines.flower.supernode`) in `--isolation process` mode with
its long-lived ClientApp worker (`decentral_bench.engines.flower.worker`). It submits
one method of a scenario with `flwr run`, follows it with `flwr log` until it
ends, reads its status with `flwr list`, and stops every process it started by
its PID: each leads its own process group, so what the SuperLink starts for a
run (its SuperExec, the `flwr-serverapp` process) stops with it.

With `tls`, it first makes throw-away credentials (`credentials`): the
SuperLink serves TLS with SuperNode authentication, each SuperNode's public key
is registered (`flwr supernode register`) before that node starts, and every
node presents its private key.

Everything lives in one folder: `flwr-home/` (`FLWR_HOME`: the connection
in `config.toml`, the installed app), `credentials/`, the effective
`scenario.yaml`, and one log per process (`superlink.log`, `supernode-J.log`,
`worker-J.log`, `run.log`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

import yaml

from decentral_bench.engines.flower.credentials import Credentials, generate_credentials
from decentral_bench.experiment.data_cache import default_cache_folder
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.scenario import Scenario, ScenarioError
from decentral_bench.tracking.store import DEFAULT_TRACKING_URI

APP_FOLDER = Path(__file__).resolve().parents[3]  # the Flower app: where pyproject.toml is
CONNECTION = "deploy-local"
LOOPBACK = "127.0.0.1"


class DeploymentError(RuntimeError):
    """A part of the local federation did not start or answer; the message says which."""


@dataclass(frozen=True)
class Outcome:
    """How a submitted run ended, as the SuperLink reports it (`flwr list`)."""

    run_id: int
    status: str  # e.g. finished:completed, finished:failed, finished:stopped
    details: str = ""
    folder: Path | None = None  # the federation's logs (kept unless the run completed)

    @property
    def completed(self) -> bool:
        return self.status == "finished:completed"


def flower_command(name: str) -> str:
    """A Flower console script of this environment (beside this Python, else on PATH)."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise DeploymentError(f"Flower's `{name}` command was not found beside {sys.executable} "
                              "or on PATH; install the project (it brings flwr) first")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def group_alive(group: int) -> bool:
    """Whether any process of a process group is left."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def log_tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Started:
    """A process the federation started: its name, its log, its handle."""

    name: str
    log: Path
    process: subprocess.Popen[bytes]


class LocalFederation:
    """A SuperLink and one SuperNode (with its worker) per agent, on loopback."""

    def __init__(self, folder: Path, agents: int, tls: bool = False,
                 data_cache: Path | None = None, start_timeout: float = 60.0) -> None:
        self.folder = folder.resolve()
        # Where the processes run: the ServerApp's relative paths (MLflow's `mlruns`
        # artifact folder beside a sqlite store) land there, as under `decentral-bench run`.
        self.working_folder = Path.cwd()
        self.agents = agents
        self.tls = tls
        self.data_cache = data_cache
        self.start_timeout = start_timeout
        self.started: list[Started] = []
        self.credentials: Credentials | None = None
        self.superlink_port = 0

    # ------------------------------------------------------------ processes

    def environment(self) -> dict[str, str]:
        """What every process sees: this environment's commands first on PATH (the
        SuperLink starts `flower-superexec` by name), its own FLWR_HOME, no telemetry,
        no installs."""
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        return {**os.environ, "PATH": path, "FLWR_HOME": str(self.folder / "flwr-home"),
                "FLWR_TELEMETRY_ENABLED": "0",
                "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"}

    def start(self, name: str, command: list[str]) -> Started:
        """Start `command` in its own process group, its output in `<name>.log`."""
        log = self.folder / f"{name}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, cwd=self.working_folder,
                                       env=self.environment(), start_new_session=True)
        started = Started(name, log, process)
        self.started.append(started)
        return started

    def wait_until_listening(self, started: Started, port: int) -> None:
        """Wait until `started` accepts connections on `port`, or say why it does not."""
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if started.process.poll() is not None:
                raise DeploymentError(f"{started.name} exited with code "
                                      f"{started.process.returncode}:\n{log_tail(started.log)}")
            try:
                socket.create_connection((LOOPBACK, port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise DeploymentError(f"{started.name} did not listen on {LOOPBACK}:{port} within "
                              f"{self.start_timeout:.0f} s:\n{log_tail(started.log)}")

    def stop(self, grace: float = 10.0) -> None:
        """Stop every process group started here, SuperNodes and workers first, the
        SuperLink (with the SuperExec and ServerApp it started) last: SIGTERM, which
        lets a running ServerApp mark its MLflow run KILLED, then SIGKILL for what is
        left after `grace` seconds."""
        for started in reversed(self.started):
            with suppress(ProcessLookupError):
                os.killpg(started.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for started in reversed(self.started):
            while group_alive(started.process.pid) and time.monotonic() < deadline:
                started.process.poll()  # reap the leader, so that its group can empty
                time.sleep(0.1)
            with suppress(ProcessLookupError):
                os.killpg(started.process.pid, signal.SIGKILL)
            started.process.wait(timeout=10)
        self.started.clear()

    # ------------------------------------------------------------ the federation

    def superlink_command(self) -> list[str]:
        command = [flower_command("flower-superlink"), "--host", LOOPBACK,
                   "--port", str(self.superlink_port), "--disable-runtime-dependency-installation"]
        if self.credentials is None:
            return [*command, "--insecure"]
        return [*command, "--ssl-ca-certfile", str(self.credentials.ca_certificate),
                "--ssl-certfile", str(self.credentials.server_certificate),
                "--ssl-keyfile", str(self.credentials.server_key), "--enable-supernode-auth"]

    def supernode_command(self, agent: int | None, port: int, key: Path | None) -> list[str]:
        """A prompt SuperNode for `agent` (None: a node without a partition-id, which the
        ServerApp leaves out): its partition, the data cache, `key` to authenticate with
        (TLS federations)."""
        node_config = f"num-partitions={self.agents}"
        if agent is not None:
            node_config = f"partition-id={agent} {node_config}"
        if self.data_cache is not None:
            node_config += f" data-cache=\"{self.data_cache}\""
        command = [sys.executable, "-m", "decentral_bench.engines.flower.supernode",
                   "--superlink", f"{LOOPBACK}:{self.superlink_port}", "--isolation", "process",
                   "--host", LOOPBACK, "--port", str(port), "--node-config", node_config]
        if self.credentials is None:
            return [*command, "--insecure"]
        command += ["--root-certificates", str(self.credentials.ca_certificate)]
        return command if key is None else [*command, "--auth-supernode-private-key", str(key)]

    def start_node(self, agent: int | None, key: Path | None = None, worker: bool = True,
                   name: str | None = None) -> Started:
        """A SuperNode serving `agent` (logging to `<name>.log`, by default
        `supernode-<agent>.log`) and, unless told not to, its ClientApp worker."""
        return self.start_nodes([(agent, key, name)], worker)[0]

    def start_nodes(self, nodes: list[tuple[int | None, Path | None, str | None]],
                    worker: bool = True) -> list[Started]:
        """Start SuperNodes (agent, key, log name) at once, then a worker for each as soon
        as its Runtime API listens."""
        ports = [free_port() for _ in nodes]
        started = [self.start(name or f"supernode-{agent}",
                              self.supernode_command(agent, port, key))
                   for (agent, key, name), port in zip(nodes, ports, strict=True)]
        for node, port, (agent, _, name) in zip(started, ports, nodes, strict=True):
            self.wait_until_listening(node, port)
            if worker:
                self.start(f"{name}-worker" if name else f"worker-{agent}",
                           [sys.executable, "-m", "decentral_bench.engines.flower.worker",
                            "--runtime-api-address", f"{LOOPBACK}:{port}", "--insecure",
                            "--app", str(APP_FOLDER)])
        return started

    def write_connection(self) -> None:
        """The `flwr` CLI's connection to this SuperLink, in FLWR_HOME/config.toml."""
        home = self.folder / "flwr-home"
        home.mkdir(parents=True, exist_ok=True)
        security = "insecure = true" if self.credentials is None else \
            f"root-certificates = \"{self.credentials.ca_certificate}\""
        (home / "config.toml").write_text(
            f"[superlink]\ndefault = \"{CONNECTION}\"\n\n[superlink.{CONNECTION}]\n"
            f"address = \"{LOOPBACK}:{self.superlink_port}\"\n{security}\n")

    def flwr(self, *arguments: str, timeout: float = 120.0) -> str:
        """Run the `flwr` CLI against this federation; its standard output."""
        done = subprocess.run([flower_command("flwr"), *arguments], capture_output=True,
                              text=True, env=self.environment(), cwd=self.folder,
                              timeout=timeout, check=False)
        if done.returncode != 0:
            raise DeploymentError(f"`flwr {' '.join(arguments)}` failed (exit code "
                                  f"{done.returncode}):\n{done.stdout}{done.stderr}")
        return done.stdout

    def register(self, *public_keys: Path) -> None:
        """Let the SuperNodes holding these keys' private halves join (`flwr supernode
        register`, one process per key, all at once)."""
        commands = [[flower_command("flwr"), "supernode", "register", str(key), CONNECTION,
                     "--format", "json"] for key in public_keys]
        running = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    env=self.environment(), cwd=self.folder, text=True)
                   for command in commands]
        for key, process in zip(public_keys, running, strict=True):
            output, _ = process.communicate(timeout=120)
            if process.returncode != 0:
                raise DeploymentError(f"registering {key} failed:\n{output}")

    def __enter__(self) -> LocalFederation:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.tls:
            self.credentials = generate_credentials(self.folder / "credentials", self.agents)
        self.superlink_port = free_port()
        self.write_connection()
        try:
            self.wait_until_listening(self.start("superlink", self.superlink_command()),
                                      self.superlink_port)
            keys: list[Path | None] = [None] * self.agents
            if self.credentials is not None:
                self.register(*map(self.credentials.public_key, range(self.agents)))
                keys = list(self.credentials.node_keys)
            self.start_nodes([(agent, keys[agent], None) for agent in range(self.agents)])
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------ runs

    def submit(self, scenario: Path, method: str, wait_for_nodes: float) -> int:
        """Start `method` of the scenario file on the federation (`flwr run`); its run id."""
        run_config = (f"scenario=\"{scenario.resolve()}\" method=\"{method}\" "
                      f"wait-for-nodes={wait_for_nodes}")
        answer = json.loads(self.flwr("run", str(APP_FOLDER), CONNECTION, "--run-config",
                                      run_config, "--format", "json"))
        if not answer.get("success") or answer.get("run-id") is None:
            raise DeploymentError(f"the SuperLink did not start the run: {answer}")
        return int(answer["run-id"])

    def outcome(self, run_id: int) -> Outcome:
        """The run's status now (`flwr list --run-id`)."""
        [run] = json.loads(self.flwr("list", CONNECTION, "--run-id", str(run_id),
                                     "--format", "json"))["runs"]
        return Outcome(run_id, str(run["status"]), str(run.get("status-details", "")))

    def wait(self, run_id: int, timeout: float) -> Outcome:
        """Follow the run's log into `run.log` until it ends (at most `timeout` s; then it
        is stopped with `flwr stop`); how it ended."""
        deadline = time.monotonic() + timeout
        with (self.folder / "run.log").open("a") as log:
            while True:
                remaining = deadline - time.monotonic()
                if remaining > 0:
                    with suppress(subprocess.TimeoutExpired):  # streams until the run ends
                        subprocess.run([flower_command("flwr"), "log", str(run_id), CONNECTION,
                                        "--stream"], stdout=log, stderr=subprocess.STDOUT,
                                       env=self.environment(), cwd=self.folder,
                                       timeout=remaining, check=False)
                outcome = self.outcome(run_id)
                if outcome.status.startswith("finished"):
                    return outcome
                if time.monotonic() >= deadline:
                    self.flwr("stop", str(run_id), CONNECTION)
                    return Outcome(run_id, "timed out", f"stopped after {timeout:.0f} s")
                time.sleep(1.0)


def absolute_tracking_uri(uri: str, folder: Path) -> str:
    """`uri` with a relative sqlite or file store made absolute (from `folder`): the
    ServerApp runs in the SuperLink's folder, not where the user is."""
    scheme, separator, rest = uri.partition(":")
    if scheme == "sqlite" and rest.startswith("///") and not rest.startswith("////"):
        return f"sqlite:///{(folder / rest[3:]).resolve()}"
    if not separator or (len(scheme) == 1 and scheme.isalpha()):  # a plain path
        return str((folder / uri).resolve())
    return uri


def deployable(scenario: Scenario, source: str, method: str,
               tracking_uri: str | None = None) -> Scenario:
    """The scenario as a deployment runs it: one configuration of it (no sweep, one
    seed), with `method` in it, recording to `tracking_uri` (default: its own, else
    sqlite:///mlflow.db) made absolute from here; a `ScenarioError` naming the key
    otherwise."""
    if method not in {m.name for m in scenario.methods}:
        known = ", ".join(m.name for m in scenario.methods)
        raise ScenarioError(source, [("methods", f"no method '{method}' (it has: {known})")])
    for key, value in (("sweep", scenario.sweep), ("training.seeds", scenario.training.seeds)):
        if value:
            raise ScenarioError(source, [(key, "a deployment runs one configuration: remove "
                                               "it, or give training.seed one value")])
    uri = tracking_uri or scenario.tracking.uri or DEFAULT_TRACKING_URI
    tracking = scenario.tracking.model_copy(update={"uri": absolute_tracking_uri(uri, Path.cwd())})
    return scenario.model_copy(update={"tracking": tracking})


def run_locally(scenario: Scenario, method: str, folder: Path | None = None, tls: bool = False,
                data_cache: Path | None = None, wait_for_nodes: float = 60.0,
                timeout: float = 3600.0) -> Outcome:
    """Run one method of `scenario` on a local federation (see `LocalFederation`) in
    `folder` and say how the run ended. Without a folder it uses a temporary one and
    removes it when the run completed (a failed run's logs stay; the outcome and the
    errors name the folder). The scenario is written there as it is: its tracking URI
    should be absolute (`deployable`). Nodes keep their data in `data_cache` (default:
    `data_cache.default_cache_folder()`)."""
    work = folder or Path(tempfile.mkdtemp(prefix="decentral-bench-deploy-"))
    work.mkdir(parents=True, exist_ok=True)
    path = work / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario.model_dump(mode="json"), sort_keys=False))
    agents = MethodPlan.of(scenario, method).agents
    try:
        with LocalFederation(work, agents, tls=tls,
                             data_cache=data_cache or default_cache_folder()) as federation:
            run_id = federation.submit(path, method, wait_for_nodes)
            outcome = federation.wait(run_id, timeout)
    except DeploymentError as error:
        raise DeploymentError(f"{error}\nlogs: {work}") from error
    if folder is None and outcome.completed:
        shutil.rmtree(work, ignore_errors=True)
    return replace(outcome, folder=work)
