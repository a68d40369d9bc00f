"""The stragglers study's figures and table, from its runs in the store, for its docs page
(docs/studies/stragglers/) and its parent run (`study/`).

Run after `decentral-bench run scenarios/async/stragglers.yaml` and
`decentral-bench claims stragglers` (the verdicts):

    python scripts/stragglers_figures.py [--tracking-uri URI] [--out FOLDER]

It writes `accuracy_vs_time.png` and `accuracy_vs_epochs.png` (the mean test accuracy of
each method, a column per share of stragglers, mean over seeds) and `table.md`: each
method's final test accuracy, simulated seconds to the target and in all, and AD-PSGD's
staleness.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import pyplot
from matplotlib.figure import Figure

from decentral_bench.report.bottleneck_claims import seconds_to
from decentral_bench.report.claims import Estimate
from decentral_bench.report.plots import DPI, styles
from decentral_bench.report.study_files import study_runs
from decentral_bench.report.summary import Group

REPO = Path(__file__).resolve().parents[1]
STRAGGLERS = "network.compute.stragglers.fraction"


def _fraction(group: Group) -> str:
    return str(group.records[0].swept.get(STRAGGLERS, ""))


def accuracy_figure(groups: Sequence[Group], x_axis: str, target: float) -> Figure:
    """Mean test accuracy against simulated seconds (`time`) or epochs: a column per share
    of stragglers, a line per method (mean over seeds)."""
    fractions = sorted({_fraction(g) for g in groups}, key=float)
    methods = list(dict.fromkeys(g.records[0].method for g in groups))
    colours = dict(zip(methods, styles(len(methods)), strict=True))
    figure, grid = pyplot.subplots(1, len(fractions), figsize=(5.0 * len(fractions), 4.2),
                                   dpi=DPI, squeeze=False, sharey=True)
    for axes, fraction in zip(grid[0], fractions, strict=True):
        for group in groups:
            if _fraction(group) != fraction:
                continue
            rounds, mean, _ = group.curve("test_accuracy_mean")
            x = group.seconds_at(rounds) if x_axis == "time" else group.at(rounds, "epochs")
            method = group.records[0].method
            axes.plot(x, mean, label=method, color=colours[method].colour,
                      linestyle=colours[method].line_style, linewidth=2)
        axes.axhline(target, color="#888888", linestyle=":", linewidth=1)
        axes.set_title(f"{100 * float(fraction):g} % stragglers at 5×", fontsize=11)
        axes.grid(alpha=0.3)
        axes.set_xlabel("simulated time (s)" if x_axis == "time" else "epochs")
    grid[0][0].set_ylabel("test accuracy (mean over agents)")
    grid[0][0].legend(fontsize=9, loc="lower right")
    figure.suptitle(f"Test accuracy against {'simulated time' if x_axis == 'time' else 'epochs'}"
                    f" (mean over seeds; dotted: the target {target:g})", fontsize=13)
    figure.tight_layout()
    return figure


def _final(group: Group, key: str) -> list[float]:
    return [record.curves[key][-1][1] for record in group.finished if record.curves.get(key)]


def table(client: object, groups: Sequence[Group], target: float) -> str:
    """Each group's final test accuracy, seconds to target and in all, and the staleness of
    its last virtual round (AD-PSGD)."""
    lines = ["| method | stragglers | seeds | final test acc. | s to " + f"{target:g}"
             + " | simulated s in all | mean staleness |", "|---|---|---|---|---|---|---|"]
    for group in sorted(groups, key=lambda g: (float(_fraction(g)), g.label)):
        times = [seconds_to(record, target) for record in group.finished]
        reached = [t for t in times if math.isfinite(t)]
        missed = len(times) - len(reached)
        to_target = str(Estimate.of(reached)) if reached else "–"
        if missed:
            to_target += f" ({missed} not reached)"
        staleness = [metrics["staleness_mean"] for record in group.finished
                     if "staleness_mean" in (metrics := client.get_run(  # type: ignore[attr-defined]
                         record.run_id).data.metrics)]
        lines.append(
            f"| {group.records[0].method} | {100 * float(_fraction(group)):g} % | "
            f"{len(group.finished)} | {Estimate.of(_final(group, 'test_accuracy_mean'))} | "
            f"{to_target} | {Estimate.of(_final(group, 'sim_time_s'))} | "
            f"{f'{np.mean(staleness):.3g}' if staleness else '–'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--experiment", default="stragglers")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "studies" / "stragglers")
    arguments = parser.parse_args()
    try:
        study = study_runs(arguments.tracking_uri, arguments.experiment)
    except LookupError as error:
        raise SystemExit(str(error)) from None
    figures = {"accuracy_vs_time.png": accuracy_figure(study.groups, "time", study.target),
               "accuracy_vs_epochs.png": accuracy_figure(study.groups, "epochs", study.target)}
    study.publish(arguments.out, figures,
                  {"table.md": table(study.client, study.groups, study.target)})
    print(f"wrote {', '.join([*figures, 'table.md'])} to {arguments.out} and the parent run")


if __name__ == "__main__":
    main()
