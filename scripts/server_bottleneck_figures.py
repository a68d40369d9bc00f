"""The server-bottleneck study's figures and tables, from its runs in the store, for its
docs page (docs/studies/server-bottleneck/) and its parent run (`study/`).

Run after `decentral-bench run scenarios/network/server_bottleneck.yaml` and
`decentral-bench claims server_bottleneck` (the verdicts):

    python scripts/server_bottleneck_figures.py [--tracking-uri URI] [--out FOLDER]

It writes `time_to_target.png` (seconds to target against N, as the parent's), the mean
test accuracy against simulated seconds on the smallest and largest N
(`accuracy_vs_time.png`, `accuracy_vs_time_stragglers.png`), and `round_time.md`: each
method's simulated seconds per round, split into computing and communication.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from matplotlib import pyplot
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from decentral_bench.report.plots import DPI, styles
from decentral_bench.report.scaling import AGENTS, points, scaling_figure, scaling_table
from decentral_bench.report.study_files import study_runs
from decentral_bench.report.summary import (
    Group,
    summaries,
)

REPO = Path(__file__).resolve().parents[1]
KIND, STRAGGLERS = "topology.kind", "network.compute.stragglers.fraction"


def _swept(group: Group, key: str) -> str:
    return group.records[0].swept.get(key, "")


def accuracy_figure(groups: Sequence[Group], stragglers: str, target: float) -> Figure:
    """Mean test accuracy against simulated seconds: a row per N (smallest, largest), a
    column per graph family, a line per method (mean over seeds)."""
    kinds = list(dict.fromkeys(_swept(g, KIND) for g in groups))
    sizes = sorted({int(_swept(g, AGENTS)) for g in groups})
    shown = [sizes[0], sizes[-1]] if len(sizes) > 1 else sizes
    methods = list(dict.fromkeys(g.records[0].method for g in groups))
    colours = dict(zip(methods, styles(len(methods)), strict=True))
    figure, grid = pyplot.subplots(len(shown), len(kinds), figsize=(12.0, 3.8 * len(shown)),
                                   dpi=DPI, squeeze=False, sharey=True)
    for row, size in zip(grid, shown, strict=True):
        for axes, kind in zip(row, kinds, strict=True):
            for group in groups:
                if (_swept(group, KIND), _swept(group, AGENTS), _swept(group, STRAGGLERS)) != \
                        (kind, str(size), stragglers):
                    continue
                rounds, mean, _ = group.curve("test_accuracy_mean")
                method = group.records[0].method
                axes.plot(group.seconds_at(rounds), mean, label=method,
                          color=colours[method].colour, linestyle=colours[method].line_style,
                          linewidth=2)
            axes.axhline(target, color="#888888", linestyle=":", linewidth=1)
            axes.set_xscale("log")
            axes.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            axes.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            axes.xaxis.set_minor_formatter(NullFormatter())
            axes.set_title(f"{kind}, {size} agents", fontsize=11)
            axes.grid(alpha=0.3, which="both")
            axes.set_xlabel("simulated time (s)")
        row[0].set_ylabel("test accuracy (mean over agents)")
    grid[0][0].legend(fontsize=9, loc="lower right")
    variant = "" if float(stragglers) == 0 else \
        f", {100 * float(stragglers):g} % stragglers at 5×"
    figure.suptitle(f"Test accuracy against simulated time{variant} (dotted: the target "
                    f"{target:g})", fontsize=13)
    figure.tight_layout()
    return figure


def round_time_table(client: object, groups: Sequence[Group]) -> str:
    """Each group's simulated seconds per round (its first seed's last round): computing
    and communication."""
    lines = ["| method | graph | agents | stragglers | rounds | compute s/round | "
             "communication s/round |", "|---|---|---|---|---|---|---|"]
    for group in groups:
        record = group.finished[0]
        metrics = client.get_run(record.run_id).data.metrics  # type: ignore[attr-defined]
        rounds = len(record.curves.get("sim_time_s", []))
        lines.append(f"| {record.method} | {_swept(group, KIND)} | {_swept(group, AGENTS)} | "
                     f"{_swept(group, STRAGGLERS)} | {rounds} | "
                     f"{metrics['compute_time_s']:.4g} | {metrics['communication_time_s']:.4g} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--experiment", default="server_bottleneck")
    parser.add_argument("--out", type=Path,
                        default=REPO / "docs" / "studies" / "server-bottleneck")
    arguments = parser.parse_args()
    try:
        study = study_runs(arguments.tracking_uri, arguments.experiment)
    except LookupError as error:
        raise SystemExit(str(error)) from None
    groups, target = study.groups, study.target
    found = points(groups, summaries([r for g in groups for r in g.records], target))
    figures = {"time_to_target.png": scaling_figure(found, target),
               "accuracy_vs_time.png": accuracy_figure(groups, "0.0", target),
               "accuracy_vs_time_stragglers.png": accuracy_figure(groups, "0.1", target)}
    tables = {"time_to_target.md": scaling_table(found),
              "round_time.md": round_time_table(study.client, groups)}
    study.publish(arguments.out, figures, tables)
    print(f"wrote {', '.join([*figures, *tables])} to {arguments.out} and the parent run")


if __name__ == "__main__":
    main()
