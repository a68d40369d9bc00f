"""Child runs as Ray tasks on a cluster (`resources.ray_address`, `--ray-address`).

Vectorized children are Ray tasks that reserve their CPUs (and GPUs) as Ray
resources, so Ray spreads them over the cluster's nodes; each runs in a fresh worker
process (`max_calls=1`) and writes its MLflow run itself, so the store must be one
every node reaches: a local sqlite file or folder with a cluster of more than one
node (or a node of another machine) is refused before anything starts, naming the fix.
Their progress comes back through a Ray queue. A Flower child needs no task: its
agents already run on the cluster as Ray actors, and its driver runs on this machine
(`local_pool`). Every node needs the project installed, as the Flower engine's do.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import warnings
from typing import Any

import ray
from ray.exceptions import RayError, TaskCancelledError
from ray.util.queue import Queue

from decentral_bench.experiment.sweep import RunSpec
from decentral_bench.run.child import STOPS
from decentral_bench.run.remote import ChildTask, Message, run_child
from decentral_bench.run.share import Share
from decentral_bench.scenario import ScenarioError
from decentral_bench.tracking.store import configure_mlflow, is_local_store


def _node_share(cpus: int) -> float:
    """The share of its node's memory a task of `cpus` CPUs plans in."""
    node = ray.get_runtime_context().get_node_id()
    for found in ray.nodes():
        if found["NodeID"] == node:
            return min(1.0, cpus / max(found["Resources"].get("CPU", 1.0), 1.0))
    return 1.0


@ray.remote(max_calls=1)
def child_task(task: ChildTask, queue: Queue) -> None:
    """A child run in a Ray worker of its own; Ray gives it its GPUs
    (`CUDA_VISIBLE_DEVICES`), this its CPU threads and share of its node's memory."""
    if not task.verbose:
        warnings.simplefilter("ignore")
    configure_mlflow(task.verbose)
    Share(task.share.cpus, _node_share(task.share.cpus)).apply()
    node = ray.get_runtime_context().get_node_id()
    with contextlib.suppress(*STOPS):  # marked KILLED (Ray cancelled it), or the sweep marks it
        run_child(task, queue.put, {"ray_node": node})


def _nodes() -> list[dict[str, Any]]:
    return [node for node in ray.nodes() if node["Alive"]]


def store_problem_on(nodes: list[dict[str, Any]], uri: str) -> str | None:
    """Why the store at `uri` cannot take runs from the cluster's `nodes` (None if it can):
    a local file or folder and a node that may be on another machine."""
    hosts = {node.get("NodeManagerHostname", "") for node in nodes}
    if not is_local_store(uri) or (len(nodes) == 1 and hosts == {socket.gethostname()}):
        return None
    whom = f"{len(nodes)} nodes cannot all" if len(nodes) > 1 else "node on another machine cannot"
    return (f"the MLflow store {uri} is a file of this machine, which the Ray cluster's {whom} "
            f"write to: run an MLflow server every node reaches (mlflow server --host 0.0.0.0 "
            f"--port 5000 --backend-store-uri {uri}) and pass --tracking-uri "
            "http://THIS_HOST:5000 (or set tracking.uri)")


class RayPool:
    """Vectorized children as Ray tasks of the cluster at `address` (see the module
    docstring). Joining it checks the store and the GPUs the runs ask for; `source`
    names the scenario in those errors."""

    claims = False  # Ray ends a driver's tasks with it: the sweep's process stands for them

    def __init__(self, address: str, uri: str, specs: list[RunSpec], source: str,
                 verbose: bool = False) -> None:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=verbose)
        try:
            self.nodes = _nodes()
            self._check(uri, specs, source)
            self.queue = Queue(actor_options={"num_cpus": 0})
        except BaseException:
            ray.shutdown()
            raise
        self.address = address
        self.refs: dict[ray.ObjectRef, int] = {}
        self.by_index: dict[int, ray.ObjectRef] = {}
        self.jobs, self.cpus_per_run = 1, 1

    def _resource(self, name: str) -> list[float]:
        return [node["Resources"].get(name, 0.0) for node in self.nodes]

    def _check(self, uri: str, specs: list[RunSpec], source: str) -> None:
        problems = []
        store = store_problem_on(self.nodes, uri)
        if store is not None:
            problems.append(("tracking.uri", store))
        most = max(self._resource("GPU"), default=0.0)
        for resources in {spec.scenario.resources for spec in specs}:
            if resources.device == "cuda" and most == 0.0:
                problems.append(("resources.device", "is 'cuda' but no node of the Ray "
                                 "cluster has a GPU; use 'auto' or 'cpu'"))
            asked = resources.gpus_per_run
            if asked is not None and resources.device != "cpu" and asked > most:
                problems.append(("resources.gpus_per_run", f"asks for {asked:g} GPU"
                                 f"{'s' if asked > 1 else ''} per run but no node of the Ray "
                                 f"cluster has more than {most:g}"))
        if problems:
            raise ScenarioError(source, sorted(set(problems)))

    def gpus_for(self, spec: RunSpec, jobs: int) -> float:
        """The GPUs a task of `spec` reserves: none on the CPU or a cluster without GPUs,
        else `gpus_per_run`, or one GPU each while there are as many as runs at once."""
        total = sum(self._resource("GPU"))
        if spec.scenario.resources.device == "cpu" or total == 0.0:
            return 0.0
        return spec.scenario.resources.gpus_per_run or 1.0 / math.ceil(jobs / total)

    def auto_jobs(self, specs: list[RunSpec]) -> int:
        """As many runs as the cluster's CPUs hold (one each), and its GPUs where runs
        use them."""
        fits = [len(specs), int(sum(self._resource("CPU")))]
        gpus = [self.gpus_for(spec, len(specs)) for spec in specs]
        if max(gpus, default=0.0) > 0.0:
            fits.append(sum(math.floor(node / max(gpus) + 1e-9)
                            for node in self._resource("GPU")))
        return max(1, min(fits))

    def set_jobs(self, jobs: int) -> None:
        """Give each run `jobs` share of the cluster's CPUs (at most a node's)."""
        self.jobs = jobs
        self.cpus_per_run = max(1, min(int(max(self._resource("CPU"), default=1.0)),
                                       int(sum(self._resource("CPU"))) // jobs))

    def share_for(self, spec: RunSpec) -> Share | None:
        return Share(cpus=self.cpus_per_run, memory=1.0)

    def start(self, task: ChildTask) -> None:
        ref = child_task.options(num_cpus=task.share.cpus,
                                 num_gpus=self.gpus_for(task.spec, self.jobs)).remote(
            task, self.queue)
        self.refs[ref] = task.index
        self.by_index[task.index] = ref

    def receive(self, timeout: float) -> tuple[list[Message], dict[int, str]]:
        ready: list[ray.ObjectRef] = []
        if self.refs:
            ready, _ = ray.wait(list(self.refs), num_returns=len(self.refs), timeout=timeout)
        size = self.queue.qsize()
        messages: list[Message] = self.queue.get_nowait_batch(size) if size else []
        ended: dict[int, str] = {}
        for ref in ready:
            index = self.refs.pop(ref)
            del self.by_index[index]
            ended[index] = _how_it_ended(ref)
        return messages, ended

    def stop(self, index: int) -> None:
        if index in self.by_index:
            ray.cancel(self.by_index[index])

    def kill(self, index: int) -> None:
        if index in self.by_index:
            ray.cancel(self.by_index[index], force=True)

    def close(self) -> None:
        for index in list(self.by_index):
            self.kill(index)
        if ray.is_initialized():
            self.queue.shutdown(force=True)
            ray.shutdown()


def _how_it_ended(ref: ray.ObjectRef) -> str:
    try:
        ray.get(ref, timeout=10)
    except TaskCancelledError:
        return "its Ray task was cancelled"
    except RayError as error:
        return f"its Ray task failed: {str(error).strip().splitlines()[0]}"
    return "its Ray task ended"
