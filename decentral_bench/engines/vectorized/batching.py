"""Batched or agent by agent: which way a run computes its agents' gradients.

Both give every agent's gradient on its own minibatch (equal to 1e-5; agent by agent
bit for bit what its ClientApp computes). Which is faster depends on the model and the
device, so `resources.batched: auto` decides by this rule:

- on a GPU, batched: one kernel per layer for a whole block instead of one per agent;
- a model without convolutions, batched: its layers become batched matrix products,
  and a per-agent loop pays Python's and the framework's cost per agent;
- a model with convolutions on a CPU, by a measurement at start: under `vmap` a
  convolution becomes a grouped convolution (one group per agent), which CPU kernels
  run far slower than one convolution per agent (`cnn_paper` on 2 cores: about 3×);
  one gradient call of `PROBE_AGENTS` agents each way, after one call each to warm up,
  and the faster is taken. The run's event log says what was measured and picked.

`resources.batched: true | false` skips the rule (e.g. for runs that must repeat bit for
bit on other machines, whose measurement might pick the other way). A run with
`training.deterministic` does not measure either, since a measurement on a busier machine
might pick the other way and with it other kernels: a model with convolutions on a CPU
runs agent by agent (the faster way in the measurement above, and bit for bit the
ClientApp's).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from decentral_bench.engines.vectorized.batches import AgentBatches
from decentral_bench.engines.vectorized.functional import StackedModel

PROBE_AGENTS = 2


def has_convolutions(model: nn.Module) -> bool:
    """Whether any layer of `model` is a convolution."""
    return any(isinstance(module, nn.modules.conv._ConvNd) for module in model.modules())


def _seconds_per_call(model: StackedModel, batches: AgentBatches, x0: Sequence[torch.Tensor],
                      batched: bool) -> float:
    """One gradient call of the first `PROBE_AGENTS` agents at x_0 on their first
    minibatch, the model set to `batched` (the call's second run: the first warms up)."""
    agents = list(range(min(PROBE_AGENTS, len(batches.sizes))))
    points = [p.unsqueeze(0).repeat(len(agents), *[1] * p.dim()) for p in x0]
    minibatches = batches.minibatches(agents, [0] * len(agents))
    model.batched = batched
    seconds = []
    for _ in range(2):
        started = time.perf_counter()
        model.gradients(points, minibatches)
        if batches.device.type == "cuda":
            torch.cuda.synchronize(batches.device)
        seconds.append(time.perf_counter() - started)
    return seconds[-1]


def choose_batched(model: StackedModel, batches: AgentBatches, x0: Sequence[torch.Tensor],
                   setting: bool | Literal["auto"], deterministic: bool = False,
                   ) -> tuple[bool, str]:
    """Whether the run computes its gradients batched, by `setting` or (auto) the module
    docstring's rule, and what was measured to decide ("" where nothing was). `x0` is
    one agent's start point; a `deterministic` run decides without measuring."""
    if setting != "auto":
        return bool(setting), ""
    if batches.device.type == "cuda" or not has_convolutions(model.model):
        return True, ""
    if deterministic:
        return False, ""
    batched = _seconds_per_call(model, batches, x0, batched=True)
    one_by_one = _seconds_per_call(model, batches, x0, batched=False)
    faster = batched <= one_by_one
    agents = min(PROBE_AGENTS, len(batches.sizes))
    return faster, (
        f"vectorized engine: {'batched' if faster else 'agent-by-agent'} gradients "
        f"(a gradient call of {agents} agents took {batched:.3f} s batched, "
        f"{one_by_one:.3f} s agent by agent, on {batches.device.type})")
