"""The networks the agents train."""

from __future__ import annotations

import math

import torch
from torch import nn

from decentral_bench.scenario import ModelConfig


def build_model(config: ModelConfig, input_shape: tuple[int, ...], num_classes: int,
                seed: int) -> nn.Module:
    """A freshly initialised model; equal seeds give equal parameters (x_0^j = x_0)."""
    torch.manual_seed(seed)
    if config.name == "mlp":
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for hidden in config.hidden:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        return nn.Sequential(*layers)
    raise ValueError(f"unknown model {config.name!r}")


def parameter_count(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
