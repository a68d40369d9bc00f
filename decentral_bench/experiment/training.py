"""Minibatch gradients and evaluation of a model held as a list of tensors.

Agents keep their parameters x^j as a list of tensors (one per parameter of
the model, in `model.parameters()` order); the model object is only a
function evaluated at those parameters.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from torch.nn import functional


def parameters_of(model: nn.Module) -> list[torch.Tensor]:
    """A detached copy of the model's parameters."""
    return [p.detach().clone() for p in model.parameters()]


def load_parameters(model: nn.Module, parameters: list[torch.Tensor]) -> None:
    """Write `parameters` into the model in place."""
    with torch.no_grad():
        for target, source in zip(model.parameters(), parameters, strict=True):
            target.copy_(source)


def to_numpy(parameters: list[torch.Tensor]) -> list[np.ndarray]:
    return [p.detach().cpu().numpy() for p in parameters]


def from_numpy(arrays: list[np.ndarray], device: torch.device) -> list[torch.Tensor]:
    return [torch.as_tensor(a, device=device) for a in arrays]


def gradient(model: nn.Module, parameters: list[torch.Tensor], features: torch.Tensor,
             labels: torch.Tensor, weight_decay: float = 0.0,
             ) -> tuple[list[torch.Tensor], float, float]:
    """g_j(x): the mean cross-entropy gradient at `parameters` on one minibatch, plus λx.

    Returns the gradient, the minibatch loss and the minibatch accuracy.
    """
    load_parameters(model, parameters)
    model.train()
    model.zero_grad(set_to_none=True)
    logits = model(features)
    loss = functional.cross_entropy(logits, labels)
    loss.backward()
    grads = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
             for p in model.parameters()]
    if weight_decay:
        grads = [g + weight_decay * x for g, x in zip(grads, parameters, strict=True)]
    accuracy = (logits.argmax(dim=1) == labels).float().mean().item()
    return grads, loss.item(), accuracy


@torch.no_grad()
def evaluate(model: nn.Module, parameters: list[torch.Tensor], features: torch.Tensor,
             labels: torch.Tensor, batch_size: int = 2048) -> tuple[float, float]:
    """Mean loss and accuracy of the model at `parameters` on a labelled set (dropout off)."""
    load_parameters(model, parameters)
    model.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(labels), batch_size):
        logits = model(features[start:start + batch_size])
        target = labels[start:start + batch_size]
        total_loss += functional.cross_entropy(logits, target, reduction="sum").item()
        correct += int((logits.argmax(dim=1) == target).sum().item())
    return total_loss / len(labels), correct / len(labels)


def step_seed(*key: int) -> int:
    """A seed for the random draws of one step (dropout masks), from its (seed, agent,
    step) or (seed, step): the same key, the same draws, in any process."""
    return int(np.random.SeedSequence([7, *key]).generate_state(1)[0])


DETERMINISTIC_THREADS = 1  # one thread: reductions split the same way on every machine


def use_deterministic_kernels(on: bool) -> None:
    """Torch's switches for reproducible kernels: deterministic algorithms only (an op
    without one raises), cuDNN's deterministic algorithms without autotuning, cuBLAS with
    a fixed workspace (read when CUDA's first handle is made)."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = False


@contextmanager
def run_numerics(deterministic: bool, seed: int, threads: int) -> Iterator[None]:
    """Torch's global settings for one run, put back afterwards: `threads` CPU threads; or,
    `deterministic`, `DETERMINISTIC_THREADS` threads, deterministic kernels and the global
    generator seeded with `seed`, so that a rerun computes the same bits."""
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.set_num_threads(DETERMINISTIC_THREADS if deterministic else threads)
    if deterministic:
        use_deterministic_kernels(True)
        torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2:]


def available_cpus() -> int:
    """CPUs this process may use."""
    return max(1, len(os.sched_getaffinity(0)))


def select_device(requested: str) -> torch.device:
    """`auto` picks CUDA when present; `cuda` without CUDA is an error."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("resources.device is 'cuda' but no CUDA device is available; "
                           "use 'auto' or 'cpu'")
    if requested == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")
