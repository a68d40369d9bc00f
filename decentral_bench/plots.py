"""Figures that compare methods round by round."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

from matplotlib import pyplot
from matplotlib.figure import Figure

from decentral_bench.runner import MethodResult


def comparison_figure(results: Sequence[MethodResult]) -> Figure:
    """Mean test accuracy over agents (band: ± std) and consensus distance, per method."""
    figure, (accuracy_axes, consensus_axes) = pyplot.subplots(1, 2, figsize=(12, 4.5))
    for result in results:
        rounds, mean = result.series("test_accuracy_mean")
        _, std = result.series("test_accuracy_std")
        if not rounds:
            continue
        line, = accuracy_axes.plot(rounds, mean, label=result.name)
        accuracy_axes.fill_between(rounds, [m - s for m, s in zip(mean, std, strict=True)],
                                   [m + s for m, s in zip(mean, std, strict=True)],
                                   color=line.get_color(), alpha=0.2)
        train_rounds, train = result.series("train_accuracy_mean")
        accuracy_axes.plot(train_rounds, train, linestyle="--", color=line.get_color(),
                           alpha=0.7)
        consensus_rounds, consensus = result.series("consensus_distance")
        if consensus_rounds:
            consensus_axes.plot(consensus_rounds, consensus, label=result.name,
                                color=line.get_color())
    accuracy_axes.set(xlabel="round", ylabel="accuracy",
                      title="mean test accuracy over agents (solid, ± std), train (dashed)")
    accuracy_axes.legend()
    accuracy_axes.grid(alpha=0.3)
    consensus_axes.set(xlabel="round", ylabel="Ξ²", yscale="symlog",
                       title="consensus distance Ξ² = (1/n) Σ ||x̄ − x_i||²")
    consensus_axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure
