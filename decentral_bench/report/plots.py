"""Figures that compare methods, against epochs (default), rounds, simulated seconds or
bytes.

A round is not the same amount of training for every method: FedAvg's round
is `local_epochs` passes over an agent's data, a gossip round `local_steps`
minibatches. The comparison figures therefore put epochs (the per-round
`epochs` metric: passes over an agent's own data so far) on the x axis, as
the papers do; `x_axis="rounds"` plots against rounds instead, and
`x_axis="time"` against the simulated seconds of a scenario's `network:`
(the `sim_time_s` metric), where a round's length is what the network makes it, and
`x_axis="bytes"` against the bytes the network has moved so far (a log scale:
compressed gossip moves orders of magnitude less). Every report also draws test
accuracy against bytes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import matplotlib
import networkx as nx
import numpy as np

matplotlib.use("Agg")

from matplotlib import pyplot
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from decentral_bench.network.topology import Topology
from decentral_bench.report.summary import Group
from decentral_bench.scenario import FailuresConfig
from strategies.registry import METHODS

XAxis = Literal["epochs", "rounds", "time", "bytes"]
X_LABELS = {"epochs": "epochs (passes over an agent's own data)", "rounds": "round",
            "time": "simulated time (s)",
            "bytes": "MB moved by the network so far (all agents, log scale)"}
X_METRICS = {"epochs": "epochs", "time": "sim_time_s",
             "bytes": "bytes_moved_total"}  # the per-round metric each axis reads
# metric → (title, y axis label)
TITLES = {
    "test_accuracy_mean": ("Test accuracy (mean over agents)", "test accuracy"),
    "train_accuracy_mean": ("Training accuracy (mean over agents)", "training accuracy"),
    "consensus_distance": ("Consensus distance Ξ² = (1/n) Σ ||x̄ − x_i||²", "Ξ²"),
}
HONEST_ONLY = "; attackers left out"  # where runs had attackers: the figures are the honest's
FIGURE_SIZE = (10.0, 6.0)  # inches, at DPI: 1200 × 720 pixels
DPI = 120
COLOURS = [tuple(float(c) for c in matplotlib.colors.to_rgb(f"C{index}")) for index in range(10)]
LINE_STYLES = ("-", "--", "-.", ":")
LEGEND_COLUMNS = 4


@dataclass(frozen=True)
class Style:
    """How one group is drawn: a colour and a line style."""

    colour: tuple[float, ...]
    line_style: str


def styles(count: int) -> list[Style]:
    """Group i gets colour i mod 10 and line style (i + ⌊i/10⌋) mod 4: neighbours differ
    in both, and no two of the first 40 groups share both."""
    return [Style(COLOURS[index % 10], LINE_STYLES[(index + index // 10) % 4])
            for index in range(count)]


@dataclass(frozen=True)
class FailureMarker:
    """A failure at the end of `round`, drawn on the groups whose algorithm it hits."""

    round: float
    label: str
    algorithms: frozenset[str]


def failure_markers(failures: FailuresConfig) -> list[FailureMarker]:
    """The scenario's server failure (hits server-based methods) and agent crashes and
    recoveries (hit every method with more than one agent)."""
    server_based = frozenset(name for name, m in METHODS.items() if not m.is_gossip)
    multi_agent = frozenset(name for name, m in METHODS.items() if not m.single_agent)
    markers = []
    if failures.server is not None:
        markers.append(FailureMarker(failures.server.round + 0.5,
                                     f"server lost ({failures.server.mode})", server_based))
    for crash in failures.agents:
        markers.append(FailureMarker(crash.round - 0.5, f"agent {crash.agent} down",
                                     multi_agent))
        if crash.recover is not None:
            markers.append(FailureMarker(crash.recover - 0.5, f"agent {crash.agent} back",
                                         multi_agent))
    return markers


def chosen_axis(groups: Sequence[Group], x_axis: XAxis) -> XAxis:
    """`x_axis`, or the next one where a run did not record its metric: time and bytes
    fall back to epochs (runs without a network; stores from before bytes were logged),
    epochs to rounds (stores from before epochs)."""
    drawn = [group for group in groups if group.finished]
    if x_axis in ("time", "bytes") and \
            not all(group.has(X_METRICS[x_axis]) for group in drawn):
        x_axis = "epochs"
    if x_axis == "epochs" and not all(group.has("epochs") for group in drawn):
        return "rounds"
    return x_axis


def _x(group: Group, rounds: np.ndarray, x_axis: XAxis) -> np.ndarray:
    if x_axis not in X_METRICS:
        return rounds
    values = group.at(rounds, X_METRICS[x_axis])
    return values / 1e6 if x_axis == "bytes" else values  # bytes are drawn in MB


def _draw_markers(axes: Axes, groups: Sequence[Group], drawn: Sequence[Style],
                  markers: Sequence[FailureMarker], x_axis: XAxis) -> None:
    """Failures as vertical dotted lines. Against rounds one line per failure; against
    epochs or time one per group it hits, in the group's colour (a round is a different
    number of epochs, or seconds, for each method)."""
    for marker in markers:
        hit = [(g, s) for g, s in zip(groups, drawn, strict=True)
               if g.algorithm in marker.algorithms and g.finished]
        if not hit:
            continue
        places: list[tuple[float, str | tuple[float, ...], str]]
        if x_axis == "rounds":
            places = [(marker.round, "#c44e52", marker.label)]
        else:
            places = [(float(_x(g, np.array([marker.round]), x_axis)[0]), s.colour,
                       f"{marker.label}: {g.label}") for g, s in hit]
        for position, colour, text in places:
            axes.axvline(position, color=colour, linestyle=":", linewidth=1.5)
            axes.annotate(text, (position, 0.98), xycoords=("data", "axes fraction"),
                          rotation=90, va="top", ha="right", fontsize=9, color=colour)


def attacked(groups: Sequence[Group]) -> bool:
    """Whether some run had attackers (its figures are then over the honest agents)."""
    return any("attackers" in record.curves for group in groups for record in group.finished)


def _comparison_axes() -> tuple[Figure, Axes]:
    """A figure whose layout keeps room for a legend outside the axes."""
    figure, axes = pyplot.subplots(figsize=FIGURE_SIZE, dpi=DPI, layout="constrained")
    return figure, axes


def _finish(figure: Figure, axes: Axes, title: str, x_label: str, y_label: str) -> Figure:
    """Titles, grid, and the legend below the axes, never over the curves: as many
    entries a row (up to `LEGEND_COLUMNS`) as fit the figure's width, the rows taking
    room from the axes."""
    axes.set_title(title, fontsize=13)
    axes.set_xlabel(x_label, fontsize=11)
    axes.set_ylabel(y_label, fontsize=11)
    axes.grid(alpha=0.3)
    handles, labels = axes.get_legend_handles_labels()
    for columns in range(min(len(handles), LEGEND_COLUMNS), 0, -1):
        legend = figure.legend(handles, labels, fontsize=10, title="method",
                               loc="outside lower center", ncols=columns)
        if columns == 1 or legend.get_window_extent().width <= figure.bbox.width:
            break
        legend.remove()
    return figure


def metric_figure(groups: Sequence[Group], metric: str,
                  markers: Sequence[FailureMarker] = (), x_axis: XAxis = "epochs",
                  setting: str = "") -> Figure:
    """One metric, a line per group (mean over seeds, band ± std), against epochs,
    rounds or simulated seconds; failures as vertical lines. `setting` names the swept
    values the groups share: it goes in the title, and the lines are labelled by method."""
    x_axis = chosen_axis(groups, x_axis)
    figure, axes = _comparison_axes()
    drawn = styles(len(groups))
    for group, style in zip(groups, drawn, strict=True):
        rounds, mean, std = group.curve(metric)
        if len(rounds) == 0:
            continue
        x = _x(group, rounds, x_axis)
        label = group.label.removesuffix(f" {setting}") if setting else group.label
        axes.plot(x, mean, label=label, color=style.colour, linestyle=style.line_style,
                  linewidth=2)
        axes.fill_between(x, mean - std, mean + std, color=style.colour, alpha=0.15)
    _draw_markers(axes, groups, drawn, markers, x_axis)
    title, y_label = TITLES.get(metric, (metric, metric))
    title = f"{title}, {setting}" if setting else title
    if attacked(groups):
        title += HONEST_ONLY
    if metric == "consensus_distance":
        axes.set_yscale("symlog", linthresh=1e-6)
    if x_axis == "bytes":
        axes.set_xscale("log")
        title += ", against bytes moved"
    return _finish(figure, axes, title, X_LABELS[x_axis], y_label)


def spread_figure(groups: Sequence[Group], window: int = 5, x_axis: XAxis = "epochs") -> Figure:
    """Std of test accuracy over agents, moving-averaged (the paper's Fig. 2, lower
    panels): how evenly the agents learned."""
    x_axis = chosen_axis(groups, x_axis)
    figure, axes = _comparison_axes()
    for group, style in zip(groups, styles(len(groups)), strict=True):
        rounds, mean, _ = group.curve("test_accuracy_std")
        if len(rounds) == 0:
            continue
        width = max(1, min(window, len(mean)))
        smooth = np.convolve(mean, np.ones(width) / width, mode="valid")
        axes.plot(_x(group, rounds[width - 1:], x_axis), smooth, label=group.label,
                  color=style.colour, linestyle=style.line_style, linewidth=2)
    return _finish(figure, axes,
                   f"Accuracy spread over agents (moving average of {window} evaluations)"
                   + (HONEST_ONLY if attacked(groups) else ""),
                   X_LABELS[x_axis], "std of test accuracy over agents")


def swept_setting(group: Group) -> str:
    """The swept values in a group's label (`partition=dirichlet(alpha=0.1)`), or ''."""
    return group.label.removeprefix(group.records[0].method).strip()


def sweep_figure(groups: Sequence[Group]) -> Figure | None:
    """Final test accuracy (mean over seeds, bar ± std) of each method against the swept
    settings, in the sweep's order: e.g. accuracy against the data's heterogeneity. None
    when the groups swept nothing."""
    settings = list(dict.fromkeys(swept_setting(group) for group in groups))
    if settings == [""]:
        return None
    methods = list(dict.fromkeys(group.records[0].method for group in groups))
    figure, axes = pyplot.subplots(figsize=FIGURE_SIZE, dpi=DPI)
    for method, style in zip(methods, styles(len(methods)), strict=True):
        places, means, stds = [], [], []
        for group in groups:
            finals = [r.final("test_accuracy_mean") for r in group.finished]
            finals = [value for value in finals if np.isfinite(value)]
            if group.records[0].method != method or not finals:
                continue
            places.append(settings.index(swept_setting(group)))
            means.append(float(np.mean(finals)))
            stds.append(float(np.std(finals)))
        if places:
            axes.errorbar(places, means, yerr=stds, label=method, color=style.colour,
                          linestyle=style.line_style, linewidth=2, marker="o", capsize=4)
    axes.set_xticks(range(len(settings)), settings, rotation=15, ha="right")
    return _finish(figure, axes, "Final test accuracy against the swept setting",
                   "swept setting", "final test accuracy (mean over agents)")


def file_part(text: str) -> str:
    """`text` as part of a file name: characters other than letters, digits, `._=-` as `_`."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_")


def report_figures(groups: Sequence[Group], markers: Sequence[FailureMarker] = (),
                   x_axis: XAxis = "epochs") -> dict[str, Figure]:
    """Every figure of a comparison report, by artifact file name. When the scenario sweeps,
    also the final accuracy against the swept setting and, per setting, the test accuracy
    of the methods run with it (`by_setting/`)."""
    figures = {f"{metric}.png": metric_figure(groups, metric, markers, x_axis)
               for metric in TITLES}
    figures["accuracy_spread.png"] = spread_figure(groups, x_axis=x_axis)
    by_sweep = sweep_figure(groups)
    if by_sweep is not None:
        figures["final_accuracy_by_sweep.png"] = by_sweep
        for setting in dict.fromkeys(swept_setting(group) for group in groups):
            members = [group for group in groups if swept_setting(group) == setting]
            figures[f"by_setting/test_accuracy_{file_part(setting)}.png"] = metric_figure(
                members, "test_accuracy_mean", markers, x_axis, setting)
    if x_axis != "bytes" and chosen_axis(groups, "bytes") == "bytes":
        figures["test_accuracy_mean_vs_bytes.png"] = metric_figure(
            groups, "test_accuracy_mean", x_axis="bytes")
    return figures


def attack_figure(cells: dict[tuple[str, str, int], tuple[float, float]],
                  methods: Sequence[str], attacks: Sequence[str], counts: Sequence[int],
                  title: str) -> Figure:
    """Bars of each method's honest final test accuracy (mean ± std over seeds), clean and
    under each attack, one panel per number of attackers; `cells` maps (method, attack,
    count) to (mean, std), attack "clean" with count 0 for the run without attackers."""
    figure, panels = pyplot.subplots(1, len(counts), figsize=(max(10.0, 6.5 * len(counts)), 4.8),
                                     dpi=DPI, sharey=True, squeeze=False)
    columns = ["clean", *attacks]
    width = 0.8 / max(1, len(methods))
    for axes, count in zip(panels[0], counts, strict=True):
        for index, (method, style) in enumerate(zip(methods, styles(len(methods)),
                                                    strict=True)):
            values = [cells.get((method, a, 0 if a == "clean" else count), (np.nan, 0.0))
                      for a in columns]
            axes.bar(np.arange(len(columns)) + (index - (len(methods) - 1) / 2) * width,
                     [v[0] for v in values], width, yerr=[v[1] for v in values],
                     color=style.colour, label=method, capsize=2)
        axes.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
        axes.set_title(f"{count} attacker{'s' if count > 1 else ''}", fontsize=12)
        axes.set_ylim(0.0, 1.0)
        axes.grid(axis="y", alpha=0.3)
    panels[0][0].set_ylabel("final test accuracy of the honest agents")
    panels[0][-1].legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # off the bars
    figure.suptitle(title, fontsize=13)
    figure.tight_layout()
    return figure


def graph_figure(topology: Topology) -> Figure:
    """The communication graph, edges labelled with π_jl (labels up to 40 agents)."""
    figure, axes = pyplot.subplots(figsize=(7, 7), dpi=DPI)
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
                   f"λ2 = {topology.lambda2:.4g}, λN = {topology.lambda_n:.4g}")
    axes.axis("off")
    figure.tight_layout()
    return figure


def matrix_csv(matrix: np.ndarray) -> str:
    """A matrix over agents (Π) as a person reads it: CSV with agent headers, %.6g."""
    names = [f"agent_{j}" for j in range(len(matrix))]
    rows = [",".join(["", *names])]
    rows += [",".join([name, *(f"{value:.6g}" for value in row)])
             for name, row in zip(names, matrix, strict=True)]
    return "\n".join(rows) + "\n"


def label_histogram_figure(histogram: np.ndarray) -> Figure:
    """Stacked bars: samples of each class held by each agent (agents on integer ticks)."""
    agents, classes = histogram.shape
    figure, axes = pyplot.subplots(figsize=(max(6.0, 0.35 * agents + 3), 4.5), dpi=DPI)
    bottom = np.zeros(agents)
    colours = pyplot.get_cmap("tab20" if classes > 10 else "tab10")
    for label in range(classes):
        axes.bar(range(agents), histogram[:, label], bottom=bottom, width=0.8,
                 color=colours(label % colours.N), label=str(label) if classes <= 20 else None)
        bottom += histogram[:, label]
    axes.set(xlabel="agent", ylabel="training samples", title="label histogram per agent")
    axes.set_xlim(-0.6, agents - 0.4)
    if agents <= 40:
        axes.set_xticks(range(agents))
    else:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    if classes <= 20:
        axes.legend(title="class", fontsize=7, ncols=2, loc="upper left", bbox_to_anchor=(1, 1))
    figure.tight_layout()
    return figure
