"""What this machine allows: its memory bandwidth and FLOP rate, measured, and the least
time a workload's round could take at those rates.

The bandwidth is that of a copy of `COPY_BYTES` (bytes read plus bytes written over the
time), the FLOP rate that of a float32 matrix product of `MATMUL_SIZE`² (2n³ operations
over the time), both the best of `REPEATS` runs with the torch threads the engines use,
on the device the workload runs on. A round's least time is the larger of

- compute: the floating-point operations of its gradients (every agent's forward and
  backward pass on its minibatch, counted by `torch.utils.flop_counter` on one agent) and
  of its mixing (a multiply and an add per non-zero entry of Π per parameter), at the
  FLOP rate;
- traffic: what any program must move: every agent's parameters read and written once
  per step, and its minibatch read once, at the bandwidth.

No program of the round can beat it on this machine; the bench reports each path's
round time as a multiple of it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional
from torch.utils.flop_counter import FlopCounterMode

from decentral_bench.experiment.data import batch_slot
from decentral_bench.experiment.plan import MethodPlan

COPY_BYTES = 256 * 2**20
MATMUL_SIZE = 2048
REPEATS = 5


@dataclass(frozen=True)
class MachineRates:
    """The measured memory bandwidth (GB/s, read plus write) and FLOP rate (GFLOP/s)."""

    bandwidth_gb_s: float
    gflop_s: float


@dataclass(frozen=True)
class RoundWork:
    """What one round computes (GFLOP) and must move at least (GB)."""

    gflop: float
    traffic_gb: float

    def floor_s(self, rates: MachineRates) -> float:
        """The least time of the round at `rates`: the larger of its compute time and its
        traffic time."""
        return max(self.gflop / rates.gflop_s, self.traffic_gb / rates.bandwidth_gb_s)


def _best_seconds(work: object, device: torch.device) -> float:
    best = math.inf
    for _ in range(REPEATS):
        started = time.perf_counter()
        work()  # type: ignore[operator]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - started)
    return best


def measure_rates(device: torch.device) -> MachineRates:
    """The copy bandwidth and matmul FLOP rate of `device` now."""
    source = torch.ones(COPY_BYTES // 4, device=device)
    target = torch.empty_like(source)
    copy_s = _best_seconds(lambda: target.copy_(source), device)
    left = torch.rand(MATMUL_SIZE, MATMUL_SIZE, device=device)
    right = torch.rand(MATMUL_SIZE, MATMUL_SIZE, device=device)
    product = torch.empty_like(left)
    matmul_s = _best_seconds(lambda: torch.mm(left, right, out=product), device)
    return MachineRates(bandwidth_gb_s=2 * COPY_BYTES / copy_s / 1e9,
                        gflop_s=2 * MATMUL_SIZE**3 / matmul_s / 1e9)


def gradient_flops(plan: MethodPlan, samples: int) -> int:
    """Floating-point operations of one agent's forward and backward pass on `samples`."""
    model = plan.build_model()
    features = plan.dataset.train_x[:samples]
    labels = plan.dataset.train_y[:samples]
    with FlopCounterMode(display=False) as counter:
        functional.cross_entropy(model(features), labels).backward()
    return int(counter.get_total_flops())


def _batch_length(size: int, batch_size: int) -> int:
    """Samples in an agent's minibatch: the batch, or all its data where it has less."""
    _, start, stop = batch_slot(size, batch_size, 0)
    return stop - start


def round_work(plan: MethodPlan) -> RoundWork:
    """The work of one round of `plan`, a gossip method of `local_steps` steps a round (see
    the module docstring)."""
    parameters = sum(array.size for array in plan.initial_parameters)
    samples = sum(_batch_length(len(part), plan.batch_size) for part in plan.partitions)
    per_sample = gradient_flops(plan, plan.batch_size) / plan.batch_size
    steps = plan.local_steps
    mixing = 2 * np.count_nonzero(plan.topology.mixing_matrix) * parameters
    flops = steps * per_sample * samples + mixing
    sample_bytes = plan.dataset.train_x[0].numel() * plan.dataset.train_x.element_size()
    traffic = steps * (2 * 4 * parameters * plan.agents + sample_bytes * samples)
    return RoundWork(gflop=float(flops) / 1e9, traffic_gb=float(traffic) / 1e9)
