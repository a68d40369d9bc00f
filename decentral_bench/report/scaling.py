"""Time to target against the number of agents, where a scenario sweeps `topology.agents`
on a modelled network (`network:`): which method reaches the target accuracy first, in
simulated seconds, at each size, and where that ranking flips.

Each group (a method with its swept values, averaged over seeds) gives one point: its
`time_to_target_s` from the summary. Groups that differ only in `topology.agents` form one
series; the table puts the methods side by side for each size and names the first.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib import pyplot
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from decentral_bench.report.plots import DPI, FIGURE_SIZE, styles
from decentral_bench.report.summary import Group, GroupSummary

AGENTS = "topology.agents"


@dataclass(frozen=True)
class Point:
    """One group's time to target: its method, its other swept values, its size."""

    method: str
    setting: str  # the swept values but the agents, e.g. `kind=ring fraction=0.1`
    agents: int
    seconds: float  # NaN: not reached


def _setting(values: dict[str, str]) -> str:
    return " ".join(f"{path.rsplit('.', 1)[-1]}={value}" for path, value in values.items())


def points(groups: Sequence[Group], found: Sequence[GroupSummary]) -> list[Point]:
    """The groups (and their summaries, in the same order) that swept the agents. A group
    whose method ignores some swept keys (FedAvg reads no `topology.kind`) ran once for all
    their values: its point joins every setting that agrees with the keys it reads."""
    chosen = [(group.records[0], summary) for group, summary in zip(groups, found, strict=True)
              if AGENTS in group.records[0].swept and group.finished]
    others = [{path: value for path, value in record.swept.items() if path != AGENTS}
              for record, _ in chosen]
    full = [values for values, (record, _) in zip(others, chosen, strict=True)
            if not record.shared]
    result = []
    for values, (record, summary) in zip(others, chosen, strict=True):
        settings = [values]
        if record.shared:
            settings = [setting for setting in full if
                        all(setting.get(path) == value for path, value in values.items())]
            settings = list({_setting(setting): setting for setting in settings}.values()) \
                or [values]
        result += [Point(record.method, _setting(setting), int(record.swept[AGENTS]),
                         summary.time_to_target_s) for setting in settings]
    return result


def _seconds(value: float) -> str:
    return "not reached" if math.isnan(value) else f"{value:.4g}"


def scaling_table(found: Sequence[Point]) -> str:
    """Markdown: a row per setting and size, a column per method (seconds to target, mean
    over seeds), and the method that reaches the target first."""
    methods = list(dict.fromkeys(point.method for point in found))
    rows: dict[tuple[str, int], dict[str, float]] = defaultdict(dict)
    for point in found:
        rows[(point.setting, point.agents)][point.method] = point.seconds
    lines = ["| setting | agents | " + " | ".join(f"{m} s" for m in methods) + " | first |",
             "|---|---|" + "---|" * (len(methods) + 1)]
    for (setting, agents), times in sorted(rows.items()):
        reached = {m: t for m, t in times.items() if not math.isnan(t)}
        first = min(reached, key=reached.__getitem__) if reached else "none"
        cells = [_seconds(times.get(m, math.nan)) for m in methods]
        lines.append(f"| {setting or '–'} | {agents} | " + " | ".join(cells) + f" | {first} |")
    return "\n".join(lines) + "\n"


def scaling_figure(found: Sequence[Point], target: float) -> Figure:
    """Seconds to target against agents (log–log): a panel per setting, a line per method
    (the same colour in every panel); a line stops where the target was not reached."""
    settings = list(dict.fromkeys(point.setting for point in found)) or [""]
    methods = list(dict.fromkeys(point.method for point in found))
    colours = dict(zip(methods, styles(len(methods)), strict=True))
    columns = min(3, len(settings))
    rows = math.ceil(len(settings) / columns)
    figure, grid = pyplot.subplots(rows, columns, figsize=(FIGURE_SIZE[0], 3.6 * rows + 0.6),
                                   dpi=DPI, sharex=True, sharey=True, squeeze=False)
    sizes = sorted({point.agents for point in found})
    for axes, setting in zip(grid.flat, settings, strict=False):
        for method in methods:
            line = sorted((p for p in found if p.setting == setting and p.method == method),
                          key=lambda point: point.agents)
            style = colours[method]
            axes.plot([p.agents for p in line], [p.seconds for p in line], marker="o",
                      label=method, color=style.colour, linestyle=style.line_style,
                      linewidth=2)
        axes.set_xscale("log", base=2)
        axes.set_yscale("log")
        axes.set_xticks(sizes, [str(size) for size in sizes])
        axes.xaxis.set_minor_formatter(NullFormatter())
        axes.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axes.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        axes.yaxis.set_minor_formatter(NullFormatter())
        axes.tick_params(labelbottom=True)
        axes.set_title(setting or "all runs", fontsize=11)
        axes.grid(alpha=0.3, which="both")
    for axes in grid.flat[len(settings):]:
        axes.set_visible(False)
    for axes in grid[-1]:
        axes.set_xlabel("agents N", fontsize=11)
    for axes in grid[:, 0]:
        axes.set_ylabel("seconds to target", fontsize=11)
    grid.flat[0].legend(fontsize=9, loc="best")
    figure.suptitle(f"Simulated time to {target:g} mean test accuracy (mean over seeds)",
                    fontsize=13)
    figure.tight_layout()
    return figure
