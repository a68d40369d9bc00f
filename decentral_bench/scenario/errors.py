"""Errors in scenario files, phrased for the person who wrote the file.

Every problem names the file, the dotted key path (``topology.agents``,
``methods[1].algorithm``) and what was expected, so a user can fix the file
without reading a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel


class ScenarioError(ValueError):
    """A scenario file that cannot be run, with every problem found in it."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: {key}: {message}" if key else f"{source}: {message}"
                 for key, message in problems]
        super().__init__("\n".join(lines))


class KeyedError(ValueError):
    """A problem a validator finds at a key below the model it validates (a cross-field
    rule of the whole scenario names `methods[0].consensus_control.phases`)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def key_path(location: tuple[int | str, ...]) -> str:
    """A pydantic error location as the dotted path a user writes (`methods[0].lr`)."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith("function-") or part in {"str", "dict"}:
            continue
        else:
            path += f".{part}" if path else part
    return path


def describe(error: Any, model: type[BaseModel]) -> tuple[str, str]:
    """One pydantic error (an `ErrorDetails` mapping) as (key path, message)."""
    location = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = key_path(location[:-1])
        allowed = allowed_keys(model, location[:-1])
        hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
        unknown = str(location[-1])
        guess = did_you_mean(unknown, allowed)
        return parent or "(top level)", f"unknown key '{unknown}'{guess}{hint}"
    if kind == "missing":
        return key_path(location), "missing required key"
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, KeyedError):
        where = ".".join(part for part in (key_path(location), cause.key) if part)
        return where, cause.message
    message = error["msg"]
    if kind.startswith("value_error"):
        message = message.removeprefix("Value error, ")
    given = error.get("input")
    if not isinstance(given, dict | list | tuple) and kind != "value_error":
        message += f" (got {given!r})"
    return key_path(location) or "(top level)", message


def did_you_mean(unknown: str, known: Iterable[str]) -> str:
    """` (did you mean 'batch_size'?)` for the known key closest to a misspelt one
    (`batch_sise`), or "" where none is close: difflib's similarity ratio ≥ 0.75, i.e.
    about one letter in four wrong, swapped or missing."""
    found = difflib.get_close_matches(unknown, list(known), n=1, cutoff=0.75)
    return f" (did you mean '{found[0]}'?)" if found else ""


def allowed_keys(model: type[BaseModel], location: tuple[int | str, ...]) -> list[str]:
    """The keys the schema allows at `location`."""
    current: Any = model
    for part in location:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        inner = getattr(annotation, "__args__", None)
        current = inner[0] if inner else annotation
    fields = getattr(current, "model_fields", None)
    return sorted(fields) if fields else []
