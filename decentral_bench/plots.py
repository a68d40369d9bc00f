"""Figures that compare methods round by round."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np

matplotlib.use("Agg")

from matplotlib import pyplot
from matplotlib.figure import Figure

from decentral_bench.runner import MethodResult
from decentral_bench.scenario import FailuresConfig
from decentral_bench.topology import Topology


def comparison_figure(results: Sequence[MethodResult],
                      markers: Sequence[tuple[float, str]] = ()) -> Figure:
    """Mean test accuracy over agents (band: ± std) and consensus distance, per method.

    `markers` are (round, label) pairs drawn as vertical lines, e.g. a server failure.
    """
    figure, (accuracy_axes, consensus_axes) = pyplot.subplots(1, 2, figsize=(12, 4.5))
    for axes in (accuracy_axes, consensus_axes):
        for position, label in markers:
            axes.axvline(position, color="#c44e52", linestyle=":", linewidth=1.5)
            axes.annotate(label, (position, 0.98), xycoords=("data", "axes fraction"),
                          rotation=90, va="top", ha="right", fontsize=8, color="#c44e52")
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


def graph_figure(topology: Topology) -> Figure:
    """The communication graph, edges labelled with π_jl (labels up to 40 agents)."""
    import networkx as nx

    figure, axes = pyplot.subplots(figsize=(6, 6))
    graph = topology.graph
    positions = (nx.circular_layout(graph) if graph.number_of_nodes() <= 40
                 else nx.spring_layout(graph, seed=0))
    nx.draw_networkx(graph, positions, ax=axes, node_size=300 if len(positions) <= 40 else 40,
                     with_labels=len(positions) <= 40, node_color="#4c72b0", font_color="white",
                     edge_color="#999999")
    if graph.number_of_nodes() <= 40 and graph.number_of_edges() <= 120:
        labels = {(j, l): f"{topology.mixing_matrix[j, l]:.2f}" for j, l in graph.edges()}
        nx.draw_networkx_edge_labels(graph, positions, edge_labels=labels, ax=axes, font_size=7)
    axes.set_title(f"{graph.number_of_nodes()} agents, {graph.number_of_edges()} edges, "
                   f"λ2 = {topology.lambda2:.4f}, λN = {topology.lambda_n:.4f}")
    axes.axis("off")
    figure.tight_layout()
    return figure


def label_histogram_figure(histogram: np.ndarray) -> Figure:
    """Stacked bars: samples of each class held by each agent."""
    agents, classes = histogram.shape
    figure, axes = pyplot.subplots(figsize=(max(5.0, 0.35 * agents + 2), 4))
    bottom = np.zeros(agents)
    colours = pyplot.get_cmap("tab20" if classes > 10 else "tab10")
    for label in range(classes):
        axes.bar(range(agents), histogram[:, label], bottom=bottom,
                 color=colours(label % colours.N), label=str(label) if classes <= 20 else None)
        bottom += histogram[:, label]
    axes.set(xlabel="agent", ylabel="training samples", title="label histogram per agent")
    if classes <= 20:
        axes.legend(title="class", fontsize=7, ncols=2, loc="upper left", bbox_to_anchor=(1, 1))
    figure.tight_layout()
    return figure


def failure_markers(failures: FailuresConfig) -> list[tuple[float, str]]:
    """Vertical lines for a scenario's server failure and agent crashes."""
    markers: list[tuple[float, str]] = []
    if failures.server is not None:
        markers.append((failures.server.round + 0.5, f"server lost ({failures.server.mode})"))
    for crash in failures.agents:
        markers.append((crash.round - 0.5, f"agent {crash.agent} down"))
        if crash.recover is not None:
            markers.append((crash.recover - 0.5, f"agent {crash.agent} back"))
    return markers
