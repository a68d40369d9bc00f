"""Figures that compare methods round by round."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np

matplotlib.use("Agg")

from matplotlib import pyplot
from matplotlib.figure import Figure

from decentral_bench.report import Group
from decentral_bench.scenario import FailuresConfig
from decentral_bench.topology import Topology

TITLES = {
    "test_accuracy_mean": "mean test accuracy over agents",
    "train_accuracy_mean": "mean training accuracy over agents",
    "consensus_distance": "consensus distance Ξ² = (1/n) Σ ||x̄ − x_i||²",
}


def metric_figure(groups: Sequence[Group], metric: str,
                  markers: Sequence[tuple[float, str]] = ()) -> Figure:
    """One metric against rounds, a line per group (mean over seeds, band ± std).

    `markers` are (round, label) pairs drawn as vertical lines, e.g. a server failure.
    """
    figure, axes = pyplot.subplots(figsize=(7, 4.5))
    for group in groups:
        rounds, mean, std = group.curve(metric)
        if len(rounds) == 0:
            continue
        line, = axes.plot(rounds, mean, label=group.label)
        axes.fill_between(rounds, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    for position, label in markers:
        axes.axvline(position, color="#c44e52", linestyle=":", linewidth=1.5)
        axes.annotate(label, (position, 0.98), xycoords=("data", "axes fraction"), rotation=90,
                      va="top", ha="right", fontsize=8, color="#c44e52")
    axes.set(xlabel="round", title=TITLES.get(metric, metric))
    if metric == "consensus_distance":
        axes.set_yscale("symlog", linthresh=1e-6)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def spread_figure(groups: Sequence[Group], window: int = 5) -> Figure:
    """Std of test accuracy over agents per round, moving-averaged (the paper's Fig. 2,
    lower panels): how evenly the agents learned."""
    figure, axes = pyplot.subplots(figsize=(7, 4.5))
    for group in groups:
        rounds, mean, _ = group.curve("test_accuracy_std")
        if len(rounds) == 0:
            continue
        width = max(1, min(window, len(mean)))
        smooth = np.convolve(mean, np.ones(width) / width, mode="valid")
        axes.plot(rounds[width - 1:], smooth, label=group.label)
    axes.set(xlabel="round", ylabel="std of test accuracy over agents",
             title=f"accuracy spread over agents (moving average of {window} evaluations)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def report_figures(groups: Sequence[Group], markers: Sequence[tuple[float, str]] = (),
                   ) -> dict[str, Figure]:
    """Every figure of a comparison report, by artifact file name."""
    figures = {f"{metric}.png": metric_figure(groups, metric, markers) for metric in TITLES}
    figures["accuracy_spread.png"] = spread_figure(groups)
    return figures


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
