"""The `claims` command: the papers' claims judged from their scenarios' runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from decentral_bench.cli.base import (
    EXIT_BAD_INPUT,
    console,
    errors,
)


def claims(
    experiments: Annotated[list[str] | None, typer.Argument(
        help="MLflow experiments (or parent run ids) of the papers' scenarios; default: "
             "every one of them in the store.")] = None,
    tracking_uri: Annotated[str | None, typer.Option(
        help="MLflow tracking URI (default: sqlite:///mlflow.db).")] = None,
    output: Annotated[Path | None, typer.Option(help="Also write the tables here.")] = None,
    figures: Annotated[Path | None, typer.Option(
        help="Also write the Byzantine studies' figures into this folder.")] = None,
) -> None:
    """Judge the papers' claims (and the Byzantine studies') from their scenarios' runs in
    the store: a table per scenario (figures over seeds, holds / does not hold / cannot be
    judged / not yet converged, why), also logged on each parent run as claims.md. A claim
    about final accuracy is judged only where every run it compares has plateaued."""
    from decentral_bench.report.paper_claims import judge_store
    from decentral_bench.tracking.store import DEFAULT_TRACKING_URI

    try:
        if figures is not None:
            figures.mkdir(parents=True, exist_ok=True)
        sections = judge_store(tracking_uri, experiments, figures)
    except LookupError as error:
        errors.print(f"[bold red]error[/]: no scenario run {escape(str(error))} in "
                     f"{tracking_uri or DEFAULT_TRACKING_URI}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    for text in sections:
        console.print(text, markup=False, highlight=False)
    if not sections:
        errors.print("no scenario run of the papers' scenarios found; run scenarios/paper/ first")
        raise typer.Exit(EXIT_BAD_INPUT)
    if output is not None:
        output.write_text("\n".join(sections))
        errors.print(f"claims written to {output}")
