"""Rules between the keys of one section, each stated once.

A section lists its rules in `rules`; the loader checks them after the keys' own checks
and the exported JSON Schema states them as `if`/`then` clauses, so an editor and the
loader agree on them. Three kinds cover the scenario format:

- `OnlyWith("alpha", Is("kind", "dirichlet"))`: a key may be set only under a condition
  (`OnlyWith("epochs", Not(IsSet("rounds")), message)`: not both);
- `Needs(Is("kind", "dirichlet"), ("alpha",), message)`: under a condition, one of the keys
  must be set;
- `Within(Is("kind", "hypercube"), "agents", (1, 2, 4, ...), message)`: under a condition,
  a key's value (its default when left out) is one of some values.

A key counts as *set* when it holds something other than its default (`augment: false`
is not set, `alpha: null` is not set). A rule between sections, or one that needs
arithmetic over two keys, cannot be a JSON Schema clause: those stay validators of
their own and are listed in `decentral_bench.scenario.keytable.UNEXPRESSED`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

from pydantic import BaseModel, BeforeValidator, GetCoreSchemaHandler, ValidationError
from pydantic_core import CoreSchema, PydanticUndefined, to_jsonable_python

# A field's default in JSON form, keyed by field name; required fields are absent.
Defaults = Mapping[str, Any]


def defaults_of(section: type[BaseModel]) -> dict[str, Any]:
    """Each optional field's default, as JSON (tuples become lists)."""
    return {name: to_jsonable_python(field.default) for name, field in
            section.model_fields.items() if field.default is not PydanticUndefined}


def _is_set(section: BaseModel, key: str) -> bool:
    field = type(section).model_fields[key]
    return field.default is PydanticUndefined or getattr(section, key) != field.default


def _set_schema(key: str, defaults: Defaults) -> dict[str, Any]:
    """JSON Schema: `key` is present with a value other than its default."""
    if key not in defaults:
        return {"required": [key]}
    return {"required": [key], "properties": {key: {"not": {"const": defaults[key]}}}}


def alternatives(values: tuple[Any, ...]) -> str:
    """`'a'`, `'a' or 'b'`, `'a', 'b' or 'c'`."""
    quoted = [repr(value) for value in values]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


@dataclass(frozen=True, init=False)
class Is:
    """Condition: `key` (its default when left out) is one of `values`; messages call the
    key `called` (`model` for ModelConfig's `name`)."""

    key: str
    values: tuple[Any, ...]
    called: str

    def __init__(self, key: str, *values: Any, called: str | None = None) -> None:
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "called", called or key)

    def holds(self, section: BaseModel) -> bool:
        return getattr(section, self.key) in self.values

    def schema(self, defaults: Defaults) -> dict[str, Any]:
        clause: dict[str, Any] = {"properties": {self.key: {"enum": list(self.values)}}}
        if self.key not in defaults or defaults[self.key] not in self.values:
            clause["required"] = [self.key]
        return clause


@dataclass(frozen=True)
class IsSet:
    """Condition: `key` holds a value other than its default."""

    key: str

    def holds(self, section: BaseModel) -> bool:
        return _is_set(section, self.key)

    def schema(self, defaults: Defaults) -> dict[str, Any]:
        return _set_schema(self.key, defaults)


@dataclass(frozen=True)
class Not:
    """Condition: `condition` does not hold (`Not(IsSet("rounds"))`)."""

    condition: Is | IsSet

    def holds(self, section: BaseModel) -> bool:
        return not self.condition.holds(section)

    def schema(self, defaults: Defaults) -> dict[str, Any]:
        return {"not": self.condition.schema(defaults)}


Condition = Is | IsSet | Not


class Rule(Protocol):
    """A rule between keys of one section."""

    def problem(self, section: BaseModel) -> str | None:
        """What is wrong with `section` under this rule, or None."""

    def clause(self, defaults: Defaults) -> dict[str, Any]:
        """The rule as a JSON Schema `if`/`then` clause."""


@dataclass(frozen=True)
class OnlyWith:
    """`key` may be set only when `condition` holds; `message` replaces the stock one (which
    only an `Is` condition has)."""

    key: str
    condition: Condition
    message: str | None = None

    def problem(self, section: BaseModel) -> str | None:
        if not _is_set(section, self.key) or self.condition.holds(section):
            return None
        if self.message is not None or not isinstance(self.condition, Is):
            return self.message or f"'{self.key}' does not go with the other keys here"
        actual = getattr(section, self.condition.key)
        return (f"'{self.key}' applies to {self.condition.called} "
                f"{alternatives(self.condition.values)} only, not {actual!r}; remove it")

    def clause(self, defaults: Defaults) -> dict[str, Any]:
        return {"if": _set_schema(self.key, defaults), "then": self.condition.schema(defaults)}


@dataclass(frozen=True)
class Needs:
    """When `condition` holds, at least one of `keys` must be set."""

    condition: Condition
    keys: tuple[str, ...]
    message: str

    def problem(self, section: BaseModel) -> str | None:
        if self.condition.holds(section) and not any(_is_set(section, k) for k in self.keys):
            return self.message
        return None

    def clause(self, defaults: Defaults) -> dict[str, Any]:
        options = [_set_schema(key, defaults) for key in self.keys]
        return {"if": self.condition.schema(defaults),
                "then": options[0] if len(options) == 1 else {"anyOf": options}}


@dataclass(frozen=True)
class Within:
    """When `condition` holds, `key`'s value (its default when left out) is in `values`."""

    condition: Condition
    key: str
    values: tuple[Any, ...]
    message: str

    def problem(self, section: BaseModel) -> str | None:
        if self.condition.holds(section) and getattr(section, self.key) not in self.values:
            return self.message.format(value=getattr(section, self.key))
        return None

    def clause(self, defaults: Defaults) -> dict[str, Any]:
        return {"if": self.condition.schema(defaults),
                "then": Is(self.key, *self.values).schema(defaults)}


def problems(section: BaseModel, rules: tuple[Rule, ...]) -> list[str]:
    """Every rule `section` breaks, in the order the rules are listed."""
    found = (rule.problem(section) for rule in rules)
    return [problem for problem in found if problem is not None]


def clauses(section: type[BaseModel], rules: tuple[Rule, ...]) -> list[dict[str, Any]]:
    """The rules as JSON Schema clauses, for the section's `allOf`."""
    defaults = defaults_of(section)
    return [rule.clause(defaults) for rule in rules]


@dataclass(frozen=True)
class Shorthand:
    """A section may be written as one string: `model: cnn_paper` is `{name: cnn_paper}`.

    Used as `Annotated[ModelConfig, Shorthand("name")]`. The JSON Schema offers the string
    form as an alternative (`anyOf`) listing exactly the values that need no other key:
    `partition: iid` is one, `partition: dirichlet` is not (it needs alpha).
    """

    key: str

    def expand(self, value: Any) -> Any:
        return {self.key: value} if isinstance(value, str) else value

    def standalone_values(self, section: type[BaseModel]) -> tuple[Any, ...]:
        """The values of `key` that make a valid section on their own."""
        choices = get_args(section.model_fields[self.key].annotation)
        return tuple(value for value in choices if _accepts(section, {self.key: value}))

    def __get_pydantic_core_schema__(self, source: type[BaseModel],
                                     handler: GetCoreSchemaHandler) -> CoreSchema:
        written_as = Literal[self.standalone_values(source)]  # type: ignore[valid-type]
        validator = BeforeValidator(self.expand, json_schema_input_type=source | written_as)
        return validator.__get_pydantic_core_schema__(source, handler)


def _accepts(section: type[BaseModel], data: dict[str, Any]) -> bool:
    try:
        section.model_validate(data)
    except ValidationError:
        return False
    return True
