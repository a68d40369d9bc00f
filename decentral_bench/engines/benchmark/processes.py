"""Each path of a workload in a process of its own, the paths taking turns round by round.

A path's peak memory is measured in its own fresh process: nothing another path
allocated, or left in the allocator, counts. Interleaved (the default), the paths'
processes load the data together, then take turns: the first path runs its start-up
and first round and hands the turn on, the next runs its own, and so on, round after
round, so that every path's round k runs right after the others' round k, under the
same load of a shared machine. A workload too large for every path's memory at once
runs its paths one after the other (`Workload.interleaved`).

Before its first round, in its turn, each path measures the machine's rates
(`machine.measure_rates`) and the least time of a round at them, so that its time is
also given as a multiple of what the machine allowed just then. It writes its figures
(JSON) and every agent's final point (one .npy per parameter, agents along the first
dimension) into the job's folder, for the harness to compare.
"""

from __future__ import annotations

import json
import multiprocessing
from dataclasses import asdict, dataclass
from multiprocessing.context import SpawnContext
from pathlib import Path

import numpy as np

from decentral_bench.engines.base import FinalParameters
from decentral_bench.engines.benchmark.machine import measure_rates, round_work
from decentral_bench.engines.benchmark.paths import RUNNERS, PathFigures
from decentral_bench.engines.benchmark.workloads import build_plan
from decentral_bench.experiment.training import select_device


@dataclass(frozen=True)
class PathJob:
    """One path of one workload, and the folder its results go to."""

    path: str
    workload: str
    rounds: int | None
    train_samples: int | None
    cpus_per_agent: int
    device: str
    folder: Path

    def figures_file(self) -> Path:
        return self.folder / f"{self.path}.json"

    def layer_file(self, layer: int) -> Path:
        return self.folder / f"{self.path}-{layer}.npy"


class Turns:
    """Whose turn it is among `count` processes; a finished process leaves the round."""

    def __init__(self, context: SpawnContext, count: int) -> None:
        self.condition = context.Condition()
        self.current = context.Value("i", 0, lock=False)
        self.done = context.Array("b", count, lock=False)

    def wait(self, me: int) -> None:
        with self.condition:
            self.condition.wait_for(lambda: self.current.value == me)

    def hand_on(self, me: int) -> None:
        """The turn goes to the next process after `me` that has not finished."""
        with self.condition:
            count = len(self.done)
            following = [(me + step) % count for step in range(1, count + 1)]
            self.current.value = next((i for i in following if not self.done[i]), -1)
            self.condition.notify_all()

    def take_turn(self, me: int) -> None:
        """Hand the turn on and wait for it to come back."""
        self.hand_on(me)
        self.wait(me)

    def finish(self, me: int) -> None:
        with self.condition:
            self.done[me] = 1
            if self.current.value == me:
                self.hand_on(me)


def _write_final(job: PathJob, final: FinalParameters) -> None:
    agents = sorted(final)
    for layer in range(len(final[agents[0]])):
        np.save(job.layer_file(layer), np.stack([final[agent][layer] for agent in agents]))


def run_job(job: PathJob, turns: Turns, me: int) -> None:
    """A path's process: load the workload, wait for its turn, measure the machine, run
    the path taking turns between rounds, write the results."""
    plan = build_plan(job.workload, job.rounds, job.train_samples, job.cpus_per_agent,
                      job.device)
    _ = plan.dataset, plan.partitions, plan.initial_parameters, plan.topology  # loaded now
    turns.wait(me)
    try:
        rates = measure_rates(select_device(plan.scenario.resources.device))
        figures, final = RUNNERS[job.path](plan, lambda: turns.take_turn(me))
    finally:
        turns.finish(me)
    figures.limit_s = round_work(plan).floor_s(rates)
    figures.bandwidth_gb_s, figures.gflop_s = rates.bandwidth_gb_s, rates.gflop_s
    job.figures_file().write_text(json.dumps(asdict(figures)))
    _write_final(job, final)


def _supervise(jobs: list[PathJob], context: SpawnContext) -> None:
    """Run `jobs` in processes taking turns, until every one has ended."""
    turns = Turns(context, len(jobs))
    processes = [context.Process(target=run_job, args=(job, turns, me))
                 for me, job in enumerate(jobs)]
    for process in processes:
        process.start()
    running = set(range(len(jobs)))
    try:
        while running:
            for me in sorted(running):
                processes[me].join(timeout=0.1)
                if processes[me].exitcode is not None:
                    running.discard(me)
                    turns.finish(me)  # a process that died in its turn hands it on
    finally:
        for me in running:
            processes[me].terminate()
            processes[me].join()
    failed = [f"{job.path} (exit code {process.exitcode})"
              for job, process in zip(jobs, processes, strict=True) if process.exitcode]
    if failed:
        raise RuntimeError(f"benchmark path(s) failed: {', '.join(failed)}")


def run_paths(jobs: list[PathJob], interleaved: bool) -> dict[str, PathFigures]:
    """Every job's figures, its paths run interleaved or one after the other."""
    context = multiprocessing.get_context("spawn")
    for group in [jobs] if interleaved else [[job] for job in jobs]:
        _supervise(group, context)
    return {job.path: PathFigures(**json.loads(job.figures_file().read_text()))
            for job in jobs}


def max_difference(job: PathJob, reference: PathJob) -> float:
    """The largest difference between the final points of two jobs' paths."""
    largest = 0.0
    layer = 0
    while reference.layer_file(layer).exists():
        got = np.load(job.layer_file(layer), mmap_mode="r")
        want = np.load(reference.layer_file(layer), mmap_mode="r")
        for first in range(0, len(want), 256):
            rows = slice(first, first + 256)
            largest = max(largest, float(np.max(np.abs(got[rows] - want[rows]))))
        layer += 1
    return largest
