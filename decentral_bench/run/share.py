"""How a parallel sweep shares a machine: how many child runs go at once (`--jobs`,
`resources.parallel_runs`, `auto`), and each one's CPUs, memory and GPUs.

A child run gets `cores // jobs` CPU threads (at least one) and `1 / jobs` of the free
memory to plan its batched calls in; a child that computes on CUDA gets whole devices,
or a share of one (`resources.gpus_per_run`; by default one device each while there
are as many devices as runs at once, else an equal share), through
`CUDA_VISIBLE_DEVICES`. `auto` is the most runs whose CPUs, memory and devices fit:
a vectorized run's memory is its data and stacks (`run_device_bytes`) and its
process; a Flower run's is its driver, its Ray and one agent actor at least.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from decentral_bench.engines.vectorized.memory import (
    MEMORY_SHARE_VARIABLE,
    free_memory_bytes,
    run_device_bytes,
)
from decentral_bench.experiment.models import parameter_count
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.experiment.sweep import RunSpec
from decentral_bench.experiment.training import CPU_SHARE_VARIABLE, available_cpus
from decentral_bench.scenario import Scenario

# Resident size of a child run's process once torch, MLflow and Flower are loaded (845 MB
# measured on this project's 2-core machine, Python 3.11, torch 2.14, flwr 1.41).
PROCESS_BYTES = 900 * 2**20
FLOWER_PROCESSES = 3  # a Flower run: its driver, its private Ray, one agent actor at least
CUDA_VARIABLE = "CUDA_VISIBLE_DEVICES"
TOLERANCE = 1e-9


def uses_gpu(scenario: Scenario, devices: int) -> bool:
    """Whether a run of `scenario` computes on CUDA where `devices` are present."""
    device = scenario.resources.device
    return device == "cuda" or (device == "auto" and devices > 0)


def gpus_per_run(scenario: Scenario, devices: int, jobs: int) -> float:
    """The GPUs each run gets: `resources.gpus_per_run`, else one device while there are
    as many as runs at once, else an equal share of one."""
    if scenario.resources.gpus_per_run is not None:
        return scenario.resources.gpus_per_run
    return 1.0 / math.ceil(jobs / max(devices, 1))


@dataclass(frozen=True)
class Share:
    """What one child run may use: `cpus` threads, a `memory` fraction of its device's
    free memory (on CUDA, its share of its one device, or 1 for whole devices), and the
    CUDA `devices` it sees (None: it computes on the CPU, devices untouched)."""

    cpus: int
    memory: float
    devices: tuple[int, ...] | None = None

    def environment(self) -> dict[str, str]:
        """The variables that give a child process its share."""
        variables = {CPU_SHARE_VARIABLE: str(self.cpus),
                     MEMORY_SHARE_VARIABLE: f"{self.memory:.6g}"}
        if self.devices is not None:
            variables[CUDA_VARIABLE] = ",".join(str(device) for device in self.devices)
        return variables

    def apply(self) -> None:
        """Take the share in this process (a child's, before it computes)."""
        os.environ.update(self.environment())
        torch.set_num_threads(self.cpus)


@dataclass
class DeviceShares:
    """What is left of each CUDA device as runs take whole devices or shares of one and
    give them back."""

    left: list[float]

    @classmethod
    def of(cls, devices: int) -> DeviceShares:
        return cls([1.0] * devices)

    def take(self, gpus: float) -> tuple[int, ...] | None:
        """Devices for a run of `gpus` GPUs (a whole number, or a share of one), or None
        while too few are free."""
        if gpus >= 1.0 - TOLERANCE:
            free = [index for index, left in enumerate(self.left) if left >= 1.0 - TOLERANCE]
            if len(free) < round(gpus):
                return None
            chosen = tuple(free[:round(gpus)])
            for index in chosen:
                self.left[index] = 0.0
            return chosen
        for index, left in enumerate(self.left):
            if left >= gpus - TOLERANCE:
                self.left[index] = left - gpus
                return (index,)
        return None

    def give_back(self, devices: tuple[int, ...], gpus: float) -> None:
        for index in devices:
            self.left[index] = min(1.0, self.left[index] + min(gpus, 1.0))


@dataclass(frozen=True)
class Needs:
    """What one run needs on the machine: CPUs, host memory, and device memory where it
    computes on CUDA (0 otherwise)."""

    cpus: int
    host_bytes: int
    device_bytes: int


def needs_of(spec: RunSpec, devices: int) -> Needs:
    """What a run of `spec` needs: see the module docstring."""
    resources = spec.scenario.resources
    if resources.engine == "flower":
        return Needs(resources.cpus_per_agent, FLOWER_PROCESSES * PROCESS_BYTES, 0)
    plan = MethodPlan.of(spec.scenario, spec.method)
    data = plan.dataset
    data_bytes = sum(tensor.numel() * tensor.element_size()
                     for tensor in (data.train_x, data.train_y, data.test_x, data.test_y))
    held = run_device_bytes(parameter_count(plan.build_model()), plan.agents, data_bytes)
    if uses_gpu(spec.scenario, devices):
        return Needs(1, PROCESS_BYTES, held)
    return Needs(1, PROCESS_BYTES + held, 0)


def _needs_by_kind(specs: list[RunSpec], devices: int) -> list[Needs]:
    """`needs_of` each distinct kind of run (engine, data, model, agents) once."""
    kinds: dict[str, Needs] = {}
    for spec in specs:
        scenario = spec.scenario
        key = "|".join((scenario.resources.engine, scenario.resources.device,
                        scenario.dataset.model_dump_json(), scenario.model.model_dump_json(),
                        str(MethodPlan.of(scenario, spec.method).agents)))
        if key not in kinds:
            kinds[key] = needs_of(spec, devices)
    return list(kinds.values())


def cuda_devices() -> int:
    """CUDA devices this process sees."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def auto_jobs(specs: list[RunSpec]) -> int:
    """The most runs of `specs` that fit on this machine at once: its cores, its free
    memory, and its devices' free memory (or `gpus_per_run`) for runs on CUDA."""
    if not specs:
        return 1
    devices = cuda_devices()
    needs = _needs_by_kind(specs, devices)
    fits = [len(specs), available_cpus() // max(need.cpus for need in needs),
            free_memory_bytes(torch.device("cpu")) // max(need.host_bytes for need in needs)]
    on_gpu = [spec.scenario for spec in specs if uses_gpu(spec.scenario, devices)]
    if on_gpu and devices:
        asked = [s.resources.gpus_per_run for s in on_gpu if s.resources.gpus_per_run]
        if asked:
            fits.append(math.floor(devices / max(asked) + TOLERANCE))
        largest = max(need.device_bytes for need in needs)
        if largest:
            per_device = min(free_memory_bytes(torch.device("cuda", index))
                             for index in range(devices)) // largest
            fits.append(devices * per_device)
    return max(1, min(fits))


def local_share(jobs: int) -> Share:
    """A run's CPUs and memory where `jobs` runs share this machine (devices apart)."""
    return Share(cpus=max(1, available_cpus() // jobs), memory=1.0 / jobs)


def gpu_problem(scenario: Scenario, devices: int) -> str | None:
    """Why `resources.gpus_per_run` cannot be met on this machine (None when it can)."""
    asked = scenario.resources.gpus_per_run
    if asked is None or scenario.resources.device == "cpu" or asked <= devices:
        return None
    wanted = f"asks for {asked:g} GPU{'s' if asked > 1 else ''} per run"
    if devices == 0:
        return (f"{wanted} but this machine has no CUDA device; leave it unset, or set "
                "resources.device: cpu")
    return (f"{wanted} but this machine has {devices} CUDA "
            f"device{'s' if devices > 1 else ''}; ask for at most {devices}, or for a share "
            "of one (e.g. 0.5)")
