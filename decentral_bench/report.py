"""The end-of-run summary: one row per method."""

from __future__ import annotations

from collections.abc import Sequence

from decentral_bench.runner import MethodResult

COLUMNS = ("method", "status", "test acc", "best", "x̄ acc", "Ξ²", "time s")


def _number(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def summary_rows(results: Sequence[MethodResult]) -> list[tuple[str, ...]]:
    """Per method: status, final mean test accuracy ± std over agents, best mean test
    accuracy, final test accuracy of the average model x̄, final Ξ², wall time."""
    rows = []
    for result in results:
        mean = result.final("test_accuracy_mean")
        std = result.final("test_accuracy_std")
        final = "–" if mean is None else f"{mean:.4f} ± {std or 0.0:.4f}"
        consensus = result.final("consensus_distance")
        rows.append((
            result.name,
            result.status,
            final,
            _number(result.best("test_accuracy_mean")),
            _number(result.final("average_model_test_accuracy")),
            "–" if consensus is None else f"{consensus:.3g}",
            f"{result.wall_time_s:.1f}",
        ))
    return rows


def summary_markdown(results: Sequence[MethodResult]) -> str:
    """The summary as a Markdown table."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in summary_rows(results)]
    return "\n".join(lines) + "\n"
