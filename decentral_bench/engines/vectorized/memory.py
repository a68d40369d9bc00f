"""How many agents the vectorized engine handles per block, and how its memory is kept.

What a run holds, in stacks (one stack: every agent's copy of the model's parameters):

- the rule's state (CDSGD: x_k; Polyak: x_k and x_{k−1}; ...), and while a round runs
  the next state, written block by block (`blocks.py`): two stacks for CDSGD. The
  previous state is dropped when the round ends; a part the rule carries over unchanged
  (Polyak's x_{k−1} ← x_k) is the same tensor, not a copy;
- one block's temporaries: its minibatches, activations, gradients, mixed points and
  the rule's intermediate results, freed block after block;
- the data set, once (on the CPU the data set's own tensors).

Per agent a training call holds its gradient and a few temporaries of the
model's size, and the activations of its minibatch for the backward pass; an
evaluation call holds the activations of one evaluation batch. A block is the
number of agents whose share fits in `MEMORY_SHARE` of the free memory of the
device (`torch.cuda.mem_get_info`, or MemAvailable in /proc/meminfo), or of this
process's share of it where it is one of a parallel sweep's runs side by side; on
a CPU at most `BLOCK_BYTES` of them, so that a block's temporaries stay a small
part of the stacks at thousands of agents. The blocks are of even size.

A block is not smaller than that: every operation of a block has a fixed cost (on
the CPU a parallel region, whose threads wait for each other at its end, and on a
machine with more busy threads than cores they wait for a descheduled one), so
the time of a round grows with its number of blocks. Measured on 2 shared cores
(load about 16), the gradients and update of 1024 agents of a 64-unit MLP took
1.7 s in one block, 1.7 s in blocks of 512, 2.6 s of 256 and 4.1 s of 114.

Free memory changes from one run to the next, and with the block the batched
kernels' shapes, and so their summation order: a convolution under `vmap` over a
block of one agent and over all of them differ in the last bits, which training
carries on (1.8e-5 after 6 rounds of `cnn_paper`). A deterministic run sizes its
blocks from `DETERMINISTIC_MEMORY` of the device's total memory, a constant of
the machine, instead (and `BLOCK_BYTES`, a constant too), so its shapes do not
depend on what else runs beside it.

`run_device_bytes` estimates what a run holds for its whole length (the data and
every agent's stacks); a parallel sweep's `--jobs auto` divides the memory by it.
"""

from __future__ import annotations

import ctypes
import math
import os

import torch
from torch import nn

MEMORY_SHARE = 0.4      # of the free memory, for one call's per-agent buffers
DETERMINISTIC_MEMORY = 0.5  # of the total memory, counted as free by deterministic runs
PARAMETER_COPIES = 4    # gradient, the update's temporaries
ACTIVATION_COPIES = 3   # activations kept for backward, their gradients, headroom
STACK_COPIES = 8        # every agent's iterate, message, mixed sum, momentum, gradient, temporaries
# A child run of a parallel sweep gets its share of the free memory here (`run.share`).
MEMORY_SHARE_VARIABLE = "DECENTRAL_BENCH_MEMORY_SHARE"
BLOCK_BYTES = 512 * 2**20  # a CPU block's working set (see the module docstring)


def free_memory_bytes(device: torch.device) -> int:
    """Free memory of the device now."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def memory_share() -> float:
    """This process's share of the device's free memory: all of it, or its share as one of
    a parallel sweep's runs (`DECENTRAL_BENCH_MEMORY_SHARE`, in (0, 1])."""
    try:
        share = float(os.environ.get(MEMORY_SHARE_VARIABLE, "1"))
    except ValueError:
        return 1.0
    return share if 0.0 < share <= 1.0 else 1.0


def run_device_bytes(parameters: int, agents: int, data_bytes: int) -> int:
    """Bytes a run holds on its device from start to end: the data set (`data_bytes`) and
    `STACK_COPIES` stacks of every agent's `parameters` float32 values. Its batched calls'
    buffers come on top, sized to fit in its share of what is free (`agents_per_call`)."""
    return data_bytes + STACK_COPIES * 4 * parameters * agents


def total_memory_bytes(device: torch.device) -> int:
    """The device's total memory, a constant of the machine."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def chunk_memory_bytes(device: torch.device, deterministic: bool) -> int:
    """The memory agents' chunks are sized from: what is free now (this process's share of
    it, `memory_share`), or, for a deterministic run, `DETERMINISTIC_MEMORY` of the total."""
    if deterministic:
        return int(DETERMINISTIC_MEMORY * total_memory_bytes(device))
    return int(memory_share() * free_memory_bytes(device))


def activation_floats(model: nn.Module, sample: torch.Tensor) -> int:
    """Floats every module outputs for one sample (a forward pass with hooks)."""
    total = 0

    def count(_: nn.Module, __: object, output: object) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel()

    handles = [module.register_forward_hook(count) for module in model.modules()]
    try:
        with torch.no_grad():
            model(sample.unsqueeze(0))
    finally:
        for handle in handles:
            handle.remove()
    return total


def call_bytes(model: nn.Module, sample: torch.Tensor, samples_per_agent: int,
               training: bool = True) -> int:
    """Bytes one agent adds to a batched call: its gradients' (or, not `training`, its
    evaluation's) buffers on `samples_per_agent` samples, in the sample's dtype."""
    per_agent = ACTIVATION_COPIES * samples_per_agent * activation_floats(model, sample)
    if training:
        per_agent += PARAMETER_COPIES * sum(p.numel() for p in model.parameters())
    return sample.element_size() * per_agent


def agents_per_call(model: nn.Module, sample: torch.Tensor, samples_per_agent: int,
                    agents: int, device: torch.device, memory_bytes: int,
                    training: bool = True) -> int:
    """How many agents' gradients (or, not `training`, evaluations of
    `samples_per_agent` samples) fit in one batched call, with `memory_bytes` free
    (`chunk_memory_bytes`); on a CPU, at most a training block of `BLOCK_BYTES`; the
    agents split into blocks of even size."""
    per_agent = call_bytes(model, sample, samples_per_agent, training)
    budget = MEMORY_SHARE * memory_bytes
    if training and device.type == "cpu":
        budget = min(budget, BLOCK_BYTES)
    fits = max(1, min(agents, math.floor(budget / per_agent)))
    return math.ceil(agents / math.ceil(agents / fits))


# glibc's mallopt parameters (malloc.h); its values are C ints.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
LARGEST_THRESHOLD = 2**31 - 1
_KEEP_FREED = {"done": False}


def keep_freed_memory() -> None:
    """Let this process reuse the memory of freed large tensors instead of handing it back.

    glibc serves allocations above a threshold with fresh mmap'd pages and returns them
    on free, so every temporary of a stack of 1024 agents' parameters pays the kernel for
    zeroed pages again; on a 2-core machine that doubled the cost of an elementwise pass
    over 200 MB. Raising the mmap and trim thresholds keeps freed blocks in the heap for
    the next tensor of the same size (blocks up to 2 GiB, the largest threshold a C int
    holds). A no-op where the C library is not glibc.
    """
    if _KEEP_FREED["done"]:
        return
    _KEEP_FREED["done"] = True
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, LARGEST_THRESHOLD)
        libc.mallopt(M_TRIM_THRESHOLD, LARGEST_THRESHOLD)
    except (OSError, AttributeError):
        pass
