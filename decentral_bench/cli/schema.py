"""The `schema` command: the JSON Schema of scenario files, for editors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from decentral_bench.cli.base import (
    errors,
)


def schema(output: Annotated[Path | None, typer.Option(
        help="Write the schema to this file instead of printing it.")] = None) -> None:
    """Print the JSON Schema of scenario files, for editors."""
    from decentral_bench.scenario.export import schema_text

    if output is None:
        print(schema_text(), end="")
    else:
        output.write_text(schema_text())
        errors.print(f"schema written to {output}")
