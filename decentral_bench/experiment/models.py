"""The networks the agents train."""

from __future__ import annotations

import math

import torch
from torch import nn

from decentral_bench.scenario import ModelConfig


def mlp(input_shape: tuple[int, ...], num_classes: int, hidden: tuple[int, ...]) -> nn.Module:
    """Fully connected ReLU network on the flattened input; without hidden layers, the linear
    model (multinomial logistic regression)."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def cnn_paper(input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0,
              ) -> nn.Module:
    """The CNN of Jiang et al. (2017), section 5: two 3×3 conv layers of 32 filters,
    max-pool, two of 64, max-pool, dense 512, ReLU, one output per class; `dropout`
    after each pooling layer, as the authors' released code has it (0.25).

    'Same' padding lets it take 1- or 3-channel inputs of any size from 4×4 up.
    """
    channels, height, width = input_shape
    def pooling() -> list[nn.Module]:
        return [nn.MaxPool2d(2), nn.Dropout(dropout)] if dropout else [nn.MaxPool2d(2)]

    features = nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), *pooling(),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), *pooling(),
    )
    flat = 64 * (height // 4) * (width // 4)
    return nn.Sequential(features, nn.Flatten(), nn.Linear(flat, 512), nn.ReLU(),
                         nn.Linear(512, num_classes))


class _BasicBlock(nn.Module):
    def __init__(self, inputs: int, outputs: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(2, outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(2, outputs)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride=stride, bias=False),
                                          nn.GroupNorm(2, outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.norm1(self.conv1(x)))
        return torch.relu(self.norm2(self.conv2(out)) + self.shortcut(x))


def resnet20(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """He et al.'s CIFAR ResNet-20 (3 stages × 3 basic blocks, 16/32/64 channels), as used
    by Kong et al. Normalisation is GroupNorm: BatchNorm's running statistics are
    per-agent state that neither CDSGD's equations nor FedAvg's averaging define.
    """
    channels = input_shape[0]
    layers: list[nn.Module] = [nn.Conv2d(channels, 16, 3, padding=1, bias=False),
                               nn.GroupNorm(2, 16), nn.ReLU()]
    inputs = 16
    for outputs, stride in ((16, 1), (32, 2), (64, 2)):
        for block in range(3):
            layers.append(_BasicBlock(inputs, outputs, stride if block == 0 else 1))
            inputs = outputs
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes)]
    return nn.Sequential(*layers)


def build_model(config: ModelConfig, input_shape: tuple[int, ...], num_classes: int,
                seed: int) -> nn.Module:
    """A freshly initialised model; equal seeds give equal parameters (x_0^j = x_0)."""
    torch.manual_seed(seed)
    if config.name == "mlp":
        return mlp(input_shape, num_classes, (64,) if config.hidden is None else config.hidden)
    if len(input_shape) != 3:
        raise ValueError(f"model '{config.name}' needs image inputs C×H×W, got {input_shape}")
    if config.name == "cnn_paper":
        return cnn_paper(input_shape, num_classes, config.dropout or 0.0)
    return resnet20(input_shape, num_classes)


def parameter_count(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
