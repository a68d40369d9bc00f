"""The compression study's docs figures (docs/img/compression/), from its runs in the
store, drawn with the project's report plots:

    python scripts/compression_figures.py [--tracking-uri URI] [--out FOLDER]

Run after `decentral-bench run scenarios/compression/choco_ring.yaml`: test accuracy
against epochs and against bytes moved on each ring, and the consensus distance against
epochs on the 16-agent ring (mean over seeds).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from matplotlib import pyplot

from decentral_bench.report.plots import XAxis, metric_figure
from decentral_bench.report.study_files import study_runs

REPO = Path(__file__).resolve().parents[1]
FIGURES: dict[int, list[tuple[str, str, XAxis]]] = {
    16: [("accuracy_epochs_16.png", "test_accuracy_mean", "epochs"),
         ("accuracy_bytes_16.png", "test_accuracy_mean", "bytes"),
         ("consensus_epochs_16.png", "consensus_distance", "epochs")],
    32: [("accuracy_epochs_32.png", "test_accuracy_mean", "epochs"),
         ("accuracy_bytes_32.png", "test_accuracy_mean", "bytes")]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--experiment", default="choco_ring")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "compression")
    arguments = parser.parse_args()
    try:
        groups = study_runs(arguments.tracking_uri, arguments.experiment).groups
    except LookupError as error:
        raise SystemExit(str(error)) from None
    arguments.out.mkdir(parents=True, exist_ok=True)
    for agents, figures in FIGURES.items():
        setting = f"agents={agents}"
        members = [g for g in groups if g.label.endswith(f" {setting}")]
        for name, metric, x_axis in figures:
            drawn = metric_figure(members, metric, x_axis=x_axis, setting=setting)
            drawn.savefig(arguments.out / name)
            pyplot.close(drawn)
    print(f"wrote the figures to {arguments.out}")


if __name__ == "__main__":
    main()
