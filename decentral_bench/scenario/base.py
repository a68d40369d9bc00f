"""The base of every section of a scenario file: strict, frozen, and following its rules."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from decentral_bench.scenario.rules import Rule, clauses, problems

# A whole number ≥ 1 (rounds, agents, sizes).
Count = Annotated[int, Field(ge=1)]


def user_path(value: str, base: Path | str | None = None) -> Path:
    """A path as a shell reads it: `~` and `~user` expanded where that home folder is
    known (else kept literally, as a shell keeps `~nosuchuser`), relative paths taken from
    `base` (default: as given)."""
    path = Path(value)
    with contextlib.suppress(RuntimeError):  # no home folder for that user (or none)
        path = path.expanduser()
    return path if base is None or path.is_absolute() else Path(base) / path


def _as_tuples(value: Any) -> Any:
    """YAML lists as tuples, at any depth (the sections are frozen and hashable)."""
    if isinstance(value, list | tuple):
        return tuple(_as_tuples(item) for item in value)
    if isinstance(value, dict):
        return {key: _as_tuples(item) for key, item in value.items()}
    return value


def _rules_schema(schema: dict[str, Any], section: type[Any]) -> None:
    """Add a section's `rules` to its JSON Schema as `if`/`then` clauses."""
    if section.rules:
        schema["allOf"] = clauses(section, section.rules)


class Strict(BaseModel):
    """Unknown keys, non-finite numbers and values of the wrong type ("4" for 4, true for 1)
    are errors; a parsed scenario never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True,
                              json_schema_extra=_rules_schema)
    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _lists_as_tuples(cls, data: Any) -> Any:
        return _as_tuples(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _follow_the_rules(self) -> Any:
        found = problems(self, self.rules)
        if found:
            raise ValueError("; ".join(found))
        return self
