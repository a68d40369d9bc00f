"""Which Ray a simulation runs on, and that it is not reachable from the network: a private
Ray confined to loopback by default, an existing cluster when one is named."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import observed_run, tiny_scenario

from decentral_bench.engines.flower.confinement import CLONE_NEWNET, enter_private_network
from decentral_bench.engines.flower.ray_cluster import backend_config, check_reachable, init_args
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.scenario import ScenarioError, parse

LOOPBACK_HEX = {"0100007F", "00000000000000000000000001000000",
                "0000000000000000FFFF00000100007F"}  # 127.0.0.1, ::1, ::ffff:127.0.0.1


def namespaces_allowed() -> bool:
    """Whether a thread may enter a network namespace of its own here."""
    verdict: list[str | None] = []
    probe = threading.Thread(target=lambda: verdict.append(enter_private_network()))
    probe.start()
    probe.join()
    return verdict == [None]


def test_a_private_ray_by_default_and_only_the_address_to_join_a_cluster(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    plan = MethodPlan.of(tiny_scenario(), "CDSGD")
    private = init_args(plan)
    assert private["address"] == "local"  # never a cluster that happens to run here
    assert private["_node_ip_address"] == "127.0.0.1"
    assert private["include_dashboard"] is False
    monkeypatch.setenv("RAY_ADDRESS", "10.1.2.3:6379")
    assert init_args(plan) == {"address": "10.1.2.3:6379", "logging_level": "error",
                               "log_to_driver": False}
    named = MethodPlan.of(tiny_scenario(resources={"ray_address": "auto", "cpus_per_agent": 64}),
                          "CDSGD")
    assert init_args(named)["address"] == "auto"  # the scenario's key wins over RAY_ADDRESS
    assert backend_config(named)["client_resources"]["num_cpus"] == 64  # the cluster decides


def test_a_ray_address_must_name_a_head() -> None:
    with pytest.raises(ScenarioError, match=r"resources.ray_address: .*HOST:PORT of a Ray head"):
        parse({"name": "x", "methods": [{"name": "M", "algorithm": "cdsgd"}],
               "resources": {"ray_address": "my-cluster"}}, "x.yaml")


def test_a_dead_address_is_an_error_at_once() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=rf"no Ray cluster answers at {address} .*unset "
                                           r"resources.ray_address, --ray-address and RAY_ADDRESS"):
        check_reachable(address, timeout=5.0)
    assert time.monotonic() - started < 5.0


def _run_tree(root: int | None = None) -> set[int]:
    """Process `root` (default: this one) and all its descendants."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1]
                                               .split()[1])
            except (OSError, IndexError):
                continue
    tree, grew = {root or os.getpid()}, True
    while grew:
        grown = tree | {pid for pid, parent in parents.items() if parent in tree}
        grew, tree = len(grown) > len(tree), grown
    return tree


def _exposed_listeners(tree: set[int]) -> list[str]:
    """Sockets of `tree` listening, in this machine's network, on a non-loopback address."""
    exposed_inodes: dict[str, str] = {}
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, state, inode = fields[1].split(":")[0], fields[3], fields[9]
            if state == "0A" and address not in LOOPBACK_HEX:  # 0A: LISTEN
                exposed_inodes[inode] = fields[1]
    found = []
    for pid in tree:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        found += [f"{name} (pid {pid}) on {exposed_inodes[link[8:-1]]}" for link in links
                  if link.startswith("socket:[") and link[8:-1] in exposed_inodes]
    return found


@pytest.mark.slow
def test_no_process_of_a_simulation_listens_beyond_loopback(monkeypatch: pytest.MonkeyPatch,
                                                            ) -> None:
    if not namespaces_allowed():
        pytest.skip("this machine refuses network namespaces (see docs/deployment.md)")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    exposed: set[str] = set()
    ray_seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.3):
            tree = _run_tree()
            names = {Path(f"/proc/{pid}/comm").read_text().strip() for pid in tree
                     if Path(f"/proc/{pid}/comm").exists()}
            if {"raylet", "gcs_server"} <= names:
                ray_seen.append(len(tree))
            exposed.update(_exposed_listeners(tree))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        _, rounds, _ = observed_run(MethodPlan.of(tiny_scenario(training__rounds=3), "CDSGD"))
    finally:
        done.set()
        watcher.join()
    assert sorted(rounds) == [1, 2, 3]
    assert ray_seen, "the watcher never saw the simulation's Ray running"
    assert exposed == set()


def _enter_network_of(pid: int) -> None:
    """Move the calling thread into the network namespace of process `pid`."""
    handle = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(handle, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
    finally:
        os.close(handle)


def _group(pgid: int) -> list[str]:
    """The processes (name and pid) of a process group."""
    members = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.name.isdigit() and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(f"{(entry / 'comm').read_text().strip()} ({entry.name})")
    return members


def stop_group(leader: subprocess.Popen[bytes], grace: float = 30.0) -> list[str]:
    """SIGTERM the process group `leader` leads and wait for it to empty; what was still
    there after `grace` seconds (then killed) is returned."""
    os.killpg(leader.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _group(leader.pid) and time.monotonic() < deadline:
        leader.poll()  # reap the leader once it exits
        time.sleep(0.5)
    left = _group(leader.pid)
    if left:
        os.killpg(leader.pid, signal.SIGKILL)
    leader.wait(10)
    return left


@pytest.mark.slow
def test_a_simulation_joins_a_running_ray_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ray head started here in a private network namespace (stopped by its PID): the
    simulation joins it by address and its agents run as workers of that head."""
    if not namespaces_allowed():
        pytest.skip("this machine refuses network namespaces")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))  # Ray's socket paths stay short
    ray = Path(sys.executable).parent / "ray"
    with (root / "head.log").open("wb") as log:
        head = subprocess.Popen(
            [str(ray), "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1",
             "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats",
             "--temp-dir", str(root / "ray"), "--block"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=enter_private_network)  # the child enters its own namespace
    outcome: list[object] = []

    def drive() -> None:
        try:
            _enter_network_of(head.pid)
            deadline = time.monotonic() + 60
            while "Ray runtime started" not in (root / "head.log").read_text():
                assert head.poll() is None and time.monotonic() < deadline, \
                    (root / "head.log").read_text()
                time.sleep(0.5)
            plan = MethodPlan.of(tiny_scenario(
                training__rounds=2, resources={"ray_address": f"127.0.0.1:{port}"}), "CDSGD")
            outcome.append(observed_run(plan)[1])
        except BaseException as error:
            outcome.append(error)

    try:
        driver = threading.Thread(target=drive)
        driver.start()
        driver.join(240)
    finally:
        left = stop_group(head)
    assert left == [], f"the head's processes outlived SIGTERM: {left}"
    workers = list((root / "ray").glob("session_*/logs/python-core-worker-*.log"))
    shutil.rmtree(root, ignore_errors=True)
    [result] = outcome
    if isinstance(result, BaseException):
        raise result
    assert isinstance(result, dict) and sorted(result) == [1, 2]
    assert workers, "no worker ran on the cluster's head"


CAP_SYS_ADMIN, PR_CAPBSET_DROP, CAPABILITY_VERSION_3 = 21, 24, 0x20080522


class _CapabilityHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapabilitySet(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def without_sys_admin() -> None:
    """In a child before it execs: give up CAP_SYS_ADMIN for good (out of the bounding set,
    so that exec cannot grant it back, then out of the process's own sets), as in an
    unprivileged container. Where the process never had it, nothing changes."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0)  # fails harmlessly without CAP_SETPCAP
    header, sets = _CapabilityHeader(CAPABILITY_VERSION_3, 0), (_CapabilitySet * 2)()
    if libc.capget(ctypes.byref(header), sets) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    keep = ~(1 << CAP_SYS_ADMIN) & 0xFFFFFFFF
    sets[0].effective &= keep
    sets[0].permitted &= keep
    sets[0].inheritable &= keep
    if libc.capset(ctypes.byref(header), sets) != 0:
        raise OSError(ctypes.get_errno(), "capset")


FALLBACK = """\
import logging, sys
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
from decentral_bench.engines.flower.simulation import FlowerEngine
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.scenario import parse
scenario = parse({"name": "fallback", "model": {"name": "mlp", "hidden": [8]},
                  "topology": {"kind": "ring", "agents": 3},
                  "training": {"rounds": 3, "batch_size": 16},
                  "methods": [{"name": "M", "algorithm": "cdsgd"}]}, "<fallback>")
rounds = []
FlowerEngine().run(MethodPlan.of(scenario, "M"),
                   lambda report: rounds.append(report.server_round), lambda *_: None)
print("rounds", rounds)
"""


@pytest.mark.slow
def test_without_namespaces_a_warning_then_ray_on_every_interface(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fallback, on any machine: a run without CAP_SYS_ADMIN cannot enter a namespace
    of its own, says so once, and its Ray listens beyond loopback while the run finishes."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    child = subprocess.Popen([sys.executable, "-c", FALLBACK], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=without_sys_admin, start_new_session=True)
    exposed: set[str] = set()
    while child.poll() is None:
        exposed.update(_exposed_listeners(_run_tree(child.pid)))
        time.sleep(0.3)
    output, errors = child.communicate()
    assert child.returncode == 0, output + errors
    assert "rounds [1, 2, 3]" in output
    warned = [line for line in errors.splitlines() if "listens on all network interfaces" in line]
    assert warned == ["WARNING decentral_bench.engines.flower.confinement: the simulation's "
                      "Ray listens on all network interfaces (no private network namespace: "
                      "unshare(CLONE_NEWNET): Operation not permitted); see "
                      "docs/deployment.md, Network exposure"], errors
    assert any(name.startswith(("gcs_server", "raylet")) for name in exposed), exposed
