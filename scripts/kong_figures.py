"""Kong et al.'s study figures and gap table, from its runs in the store, for its docs page
(docs/studies/kong/) and each parent run (`study/`).

Run after `decentral-bench run scenarios/paper/kong_phases.yaml` and
`decentral-bench claims kong_phases` (the verdicts):

    python scripts/kong_figures.py [--tracking-uri URI] [--parent ID ...] [--out FOLDER]

`--parent` names the scenario runs to read (default: the latest `kong_phases`); a study
run in parts (one parent per ring size) passes each. For every ring size it writes
`agents_<n>.png` (each arm's mean test accuracy and consensus distance Ξ² against
epochs, mean over seeds), and `gaps.md`: each size's centralized and ring accuracy, the
gap and the seeds' noise it is judged against.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from matplotlib import pyplot
from matplotlib.figure import Figure

from decentral_bench.report.claims import figure, final, noise
from decentral_bench.report.paper_claims import by_swept_values
from decentral_bench.report.plots import DPI, styles
from decentral_bench.report.study_files import StudyRuns, study_runs
from decentral_bench.report.summary import Group, group_records

REPO = Path(__file__).resolve().parents[1]


def size_figure(size: str, groups: Sequence[Group]) -> Figure:
    """Each arm's mean test accuracy (left; from the first evaluation) and Ξ² (right, log
    scale) against epochs, mean over seeds; the step decays marked."""
    colours = styles(len(groups))
    figure, (accuracy, distance) = pyplot.subplots(1, 2, figsize=(11.5, 4.4), dpi=DPI)
    for group, style in zip(groups, colours, strict=True):
        name = group.records[0].method
        seeds = len(group.finished)
        label = f"{name} ({seeds} seed{'s' if seeds > 1 else ''})"
        rounds, mean, _ = group.curve("test_accuracy_mean")
        accuracy.plot(group.at(rounds, "epochs"), mean, label=label, color=style.colour,
                      linestyle=style.line_style, linewidth=1.8)
        rounds, xi, _ = group.curve("consensus_distance")
        if len(rounds) and xi.max() > 0:
            distance.plot(group.at(rounds, "epochs"), xi, color=style.colour,
                          linestyle=style.line_style, linewidth=1.2)
    for axes in (accuracy, distance):
        for decay in (10, 15):
            axes.axvline(decay, color="#999999", linestyle=":", linewidth=1)
        axes.set_xlabel("epochs")
        axes.grid(alpha=0.3)
    accuracy.set_ylabel("test accuracy (mean over agents)")
    accuracy.legend(fontsize=8, loc="lower right")
    distance.set_yscale("log")
    distance.set_ylabel("consensus distance Ξ² of the points published")
    figure.suptitle(f"Kong et al.'s arms on a ring of {size.removeprefix('agents=')} agents "
                    "(mean over seeds; dotted: the step decays)", fontsize=12)
    figure.tight_layout()
    return figure


def gaps_table(parts: dict[str, list[Group]]) -> str:
    """Each ring size's centralized and ring accuracy, the gap and its noise."""
    lines = ["| ring | centralized | decentralized (ring) | gap | seeds' noise (±) |",
             "|---|---|---|---|---|"]
    for size, groups in sorted(parts.items(), key=lambda item: int(item[0].split("=")[-1])):
        found = {group.records[0].method: figure(group, final("test_accuracy_mean"))
                 for group in groups}
        exact, ring = found.get("centralized"), found.get("decentralized")
        if exact is None or ring is None:
            continue
        lines.append(f"| {size.removeprefix('agents=')} agents | {exact} | {ring} | "
                     f"{exact.mean - ring.mean:+.4f} | {noise(exact, ring):.4f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--parent", action="append", default=None,
                        help="a scenario run to read (repeatable; default: the latest "
                             "kong_phases)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "studies" / "kong")
    arguments = parser.parse_args()
    studies: list[StudyRuns] = []
    try:
        for parent in arguments.parent or ["kong_phases"]:
            studies.append(study_runs(arguments.tracking_uri, parent))
    except LookupError as error:
        raise SystemExit(str(error)) from None
    parts: dict[str, list[Group]] = {}
    owners: dict[str, StudyRuns] = {}
    for study in studies:
        records = [record for group in study.groups for record in group.finished]
        for size, part in by_swept_values(records).items():
            parts[size] = group_records(part)
            owners[size] = study
    table = gaps_table(parts)
    for size, groups in parts.items():
        name = f"{size.replace('=', '_')}.png"
        owners[size].publish(arguments.out, {name: size_figure(size, groups)}, {})
        print(f"wrote {name}")
    for study in studies:
        study.publish(arguments.out, {}, {"gaps.md": table})
    print(f"wrote gaps.md to {arguments.out} and the parent runs\n\n{table}")


if __name__ == "__main__":
    main()
