"""The `network` section: latency, bandwidths, per-link overrides and compute speed, from which
the clock (`decentral_bench.network.clock`) times every round in simulated seconds.

Quantities are numbers in SI base units (seconds, bytes per second) or text with a unit,
in one small grammar: a decimal number (`20`, `0.5`, `1e3`), optional spaces, one unit of

- time: `ns`, `us`, `µs`, `ms`, `s`, `min`, `h`;
- bandwidth, bytes per second: `B/s`, `kB/s` (= `KB/s`), `MB/s`, `GB/s`, `TB/s` (powers of
  1000), `KiB/s`, `MiB/s`, `GiB/s`, `TiB/s` (powers of 1024);
- bandwidth, bits per second: `bit/s`, `kbit/s`, `Mbit/s`, `Gbit/s`, `Tbit/s` and the same
  as `b/s`, `kb/s`, `Mb/s`, `Gb/s`, `Tb/s` or `bps`, `kbps`, `Mbps`, `Gbps`, `Tbps`
  (powers of 1000 bits, 8 bits a byte).

So `"20 ms"` is 0.02 s and `"100 Mbit/s"` 12,500,000 bytes per second. A unit that does not
parse is an error naming the key and the units accepted.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    NonNegativeInt,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from decentral_bench.scenario.base import Strict, user_path
from decentral_bench.scenario.rules import Is, IsSet, Needs, Not, OnlyWith

NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"

SECONDS_PER_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0,
                    "h": 3600.0}
_DECIMAL = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_BINARY = {"Ki": 2.0 ** 10, "Mi": 2.0 ** 20, "Gi": 2.0 ** 30, "Ti": 2.0 ** 40}
BYTES_PER_SECOND_PER_UNIT = {
    **{f"{prefix}B/s": factor for prefix, factor in (_DECIMAL | _BINARY).items()},
    **{f"{prefix}{bits}": factor / 8 for prefix, factor in _DECIMAL.items()
       for bits in ("bit/s", "b/s", "bps") if prefix != "K"},
}


def _unit_pattern(units: dict[str, float]) -> str:
    """`^(number) *(unit)$`, the longest units first so that `ms` is not read as `m` `s`."""
    alternatives = "|".join(re.escape(unit) for unit in sorted(units, key=len, reverse=True))
    return rf"^({NUMBER}) *({alternatives})$"


DURATION_PATTERN = _unit_pattern(SECONDS_PER_UNIT)
BANDWIDTH_PATTERN = _unit_pattern(BYTES_PER_SECOND_PER_UNIT)
DURATION_UNITS = "ns, us, µs, ms, s, min, h"
BANDWIDTH_UNITS = ("B/s, kB/s, MB/s, GB/s, KiB/s, MiB/s, GiB/s (bytes), bit/s, kbit/s, "
                   "Mbit/s, Gbit/s (bits; also written Mb/s or Mbps)")
LARGEST = sys.float_info.max
NOT_NAN = {"not": {"minimum": 0, "exclusiveMaximum": 0}}  # see scenario.export


@dataclass(frozen=True)
class Quantity:
    """How a quantity of one kind is read: its name, units, base unit and lower bound."""

    name: str
    pattern: str
    units: dict[str, float]
    listed: str
    base: str
    positive: bool  # above zero (bandwidths), else at least zero (times)
    example: str

    def read(self, value: Any) -> Any:
        """`value` in base units: a number as it is, text through the grammar."""
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return value  # the float schema refuses it with pydantic's own message
        if isinstance(value, str):
            found = re.search(self.pattern, value)
            if found is None:
                raise ValueError(
                    f"{value!r} is not a {self.name}: write a number of {self.base} or a "
                    f"number with one of the units {self.listed}, e.g. {self.example!r}"
                    + (" (it cannot be negative)" if value.lstrip().startswith("-") else ""))
            amount = float(found.group(1)) * self.units[found.group(2)]
        else:
            amount = float(value)
        if not math.isfinite(amount):
            raise ValueError(f"{value!r} is not a finite {self.name}")
        if amount < 0 or (self.positive and amount == 0):
            bound = "above zero" if self.positive else "zero or more"
            raise ValueError(f"a {self.name} must be {bound}, not {value!r}; e.g. "
                             f"{self.example!r}")
        return amount

    def json_schema(self) -> dict[str, Any]:
        low = {"exclusiveMinimum": 0} if self.positive else {"minimum": 0}
        return {"anyOf": [{"type": "number", **low, "maximum": LARGEST, **NOT_NAN},
                          {"type": "string", "pattern": self.pattern,
                           "examples": [self.example]}]}


DURATION = Quantity("duration", DURATION_PATTERN, SECONDS_PER_UNIT, DURATION_UNITS,
                    "seconds", positive=False, example="20 ms")
BANDWIDTH = Quantity("bandwidth", BANDWIDTH_PATTERN, BYTES_PER_SECOND_PER_UNIT,
                     BANDWIDTH_UNITS, "bytes per second", positive=True, example="100 Mbit/s")
# A time in seconds, or text with a time unit; a bandwidth in bytes/s, or text with a unit.
Duration = Annotated[float, BeforeValidator(DURATION.read), WithJsonSchema(DURATION.json_schema())]
Bandwidth = Annotated[float, BeforeValidator(BANDWIDTH.read),
                      WithJsonSchema(BANDWIDTH.json_schema())]


def _constant_latency(value: Any) -> Any:
    """`latency: 20 ms` stands for `{kind: constant, seconds: 20 ms}`."""
    return value if isinstance(value, dict) else {"seconds": value}


class LatencyConfig(Strict):
    """Each message's latency: a constant, or drawn (seeded) for every message."""

    kind: Literal["constant", "lognormal", "uniform"] = Field(
        "constant", description="constant: every message takes seconds; lognormal: drawn "
        "from a log-normal law of median and sigma; uniform: drawn between low and high")
    seconds: Duration = Field(
        0.0, description="constant: the latency of every message, in seconds or with a unit "
        "(`20 ms`)")
    median: Duration | None = Field(
        None, description="lognormal: the median latency (`20 ms`). No default: lognormal "
        "needs it")
    sigma: float | None = Field(
        None, gt=0.0, description="lognormal: σ > 0 of the latency's logarithm (0.5: most "
        "messages within × 0.4 .. × 2.7 of the median). No default: lognormal needs it")
    low: Duration | None = Field(
        None, description="uniform: the shortest latency. No default: uniform needs it")
    high: Duration | None = Field(
        None, description="uniform: the longest latency, at least low. No default: uniform "
        "needs it")

    rules = (
        OnlyWith("seconds", Is("kind", "constant")),
        OnlyWith("median", Is("kind", "lognormal")),
        OnlyWith("sigma", Is("kind", "lognormal")),
        OnlyWith("low", Is("kind", "uniform")),
        OnlyWith("high", Is("kind", "uniform")),
        Needs(Is("kind", "lognormal"), ("median",), "kind 'lognormal' needs median (e.g. 20 ms)"),
        Needs(Is("kind", "lognormal"), ("sigma",), "kind 'lognormal' needs sigma (e.g. 0.5)"),
        Needs(Is("kind", "uniform"), ("low",), "kind 'uniform' needs low and high"),
        Needs(Is("kind", "uniform"), ("high",), "kind 'uniform' needs low and high"),
    )

    @model_validator(mode="after")
    def _ordered(self) -> LatencyConfig:
        if self.low is not None and self.high is not None and self.high < self.low:
            raise ValueError(f"high ({self.high:g} s) must be at least low ({self.low:g} s)")
        return self


class StragglersConfig(Strict):
    """Agents that compute slower than the others."""

    fraction: float = Field(
        ge=0.0, le=1.0, description="share of the agents that straggle, in [0, 1]: ⌊fraction "
        "× N + 1/2⌋ agents, chosen with the network's seed")
    slowdown: float = Field(
        ge=1.0, description="how many times longer a straggler takes for a step, ≥ 1")
    resample: bool = Field(
        False, description="draw the stragglers again every round (true) instead of once for "
        "the run")


class ComputeConfig(Strict):
    """How long each agent takes for one minibatch step."""

    step_seconds: Duration | None = Field(
        None, description="one minibatch step's time, in seconds or with a unit (`50 ms`). "
        "No default: give it or samples_per_second")
    samples_per_second: float | None = Field(
        None, gt=0.0, description="instead of step_seconds: samples an agent processes per "
        "second; a step of batch_size samples takes batch_size / samples_per_second. "
        "Default: unset")
    stragglers: StragglersConfig | None = Field(
        None, description="agents slowed down by a factor (fixed for the run, or drawn every "
        "round). Default: none")
    jitter: float | None = Field(
        None, gt=0.0, description="σ of a seeded log-normal factor exp(σ z) (median 1) on each "
        "agent's compute time, drawn per agent and round. Default: no jitter")

    rules = (
        OnlyWith("samples_per_second", Not(IsSet("step_seconds")),
                 "give step_seconds or samples_per_second, not both"),
        Needs(Not(IsSet("step_seconds")), ("samples_per_second",),
              "compute needs step_seconds (e.g. 50 ms) or samples_per_second (e.g. 2000)"),
    )


def seconds_text(seconds: float) -> str:
    """A duration as a person writes it: `20 ms`, `1.5 s`, `250 µs`."""
    for unit, size in (("h", 3600.0), ("min", 60.0), ("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= size or unit == "µs":
            return f"{seconds / size:.4g} {unit}" if seconds else "0 s"
    raise AssertionError("unreachable")


def bandwidth_text(bytes_per_second: float | None) -> str:
    """A bandwidth in bits per second as networks are sold: `100 Mbit/s`, `1 Gbit/s`."""
    if bytes_per_second is None:
        return "unlimited"
    bits = 8 * bytes_per_second
    for unit, size in (("Tbit/s", 1e12), ("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3),
                       ("bit/s", 1.0)):
        if bits >= size or unit == "bit/s":
            return f"{bits / size:.4g} {unit}"
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class LinkOverride:
    """One line `j l latency bandwidth` of a links file (`-` keeps the default)."""

    first: int
    second: int
    latency: float | None
    bandwidth: float | None
    line: int


def _link_value(token: str, quantity: Quantity) -> float | None:
    """A links file's value: `-` (the default), a plain number or one with a unit."""
    if token == "-":
        return None
    plain = re.fullmatch(NUMBER, token)
    return float(quantity.read(float(token) if plain else token))


def read_links(path: Path | str) -> tuple[LinkOverride, ...]:
    """The per-link overrides of a links file: lines `j l latency bandwidth`, values as in
    the scenario (`5ms`, `1Gbit/s`, written without spaces) or `-` for the default; blank
    lines and `#` comments are skipped. Raises ValueError naming the file and line."""
    name = Path(path).name
    links: list[LinkOverride] = []
    seen: dict[tuple[int, int], int] = {}
    for number, text in enumerate(Path(path).read_text().splitlines(), start=1):
        fields = text.split("#", 1)[0].split()
        if not fields:
            continue
        where = f"{name} line {number}"
        if len(fields) != 4 or not (fields[0].isdigit() and fields[1].isdigit()):
            raise ValueError(f"{where}: expected 'j l latency bandwidth' (two agent numbers, "
                             f"then values or -, e.g. '0 1 5ms 1Gbit/s'), got {text.strip()!r}")
        first, second = int(fields[0]), int(fields[1])
        if first == second:
            raise ValueError(f"{where}: a link joins two different agents, not {first} and "
                             "itself")
        pair = (min(first, second), max(first, second))
        if pair in seen:
            raise ValueError(f"{where}: the link {pair[0]}–{pair[1]} was given on line "
                             f"{seen[pair]} already; keep one line per link")
        seen[pair] = number
        try:
            latency = _link_value(fields[2], DURATION)
            bandwidth = _link_value(fields[3], BANDWIDTH)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
        links.append(LinkOverride(first, second, latency, bandwidth, number))
    return tuple(links)


class NetworkConfig(Strict):
    """The network the agents train over, and how fast they compute: the simulated clock."""

    latency: Annotated[LatencyConfig, BeforeValidator(
        _constant_latency, json_schema_input_type=Duration | LatencyConfig)] = Field(
        LatencyConfig(), description="each message's latency: seconds, a value with a unit "
        "(`20 ms`) or a seeded law (`{kind: lognormal, median: 20 ms, sigma: 0.5}`, `{kind: "
        "uniform, low: 10 ms, high: 30 ms}`). Default: 0")
    agent_uplink: Bandwidth | None = Field(
        None, description="each agent's upload bandwidth, bytes per second or with a unit "
        "(`100 Mbit/s`). Default: unlimited")
    agent_downlink: Bandwidth | None = Field(
        None, description="each agent's download bandwidth. Default: unlimited")
    server_uplink: Bandwidth | None = Field(
        None, description="the server's upload bandwidth (FedAvg's broadcast). Default: "
        "unlimited")
    server_downlink: Bandwidth | None = Field(
        None, description="the server's download bandwidth (FedAvg's uploads share it). "
        "Default: unlimited")
    links_file: str | None = Field(
        None, description="per-link overrides of the graph's edges: a text file of lines `j l "
        "latency bandwidth` (`0 1 5ms 1Gbit/s`, `-` keeps the default), relative to the "
        "scenario file's folder. Default: none")
    compute: ComputeConfig | None = Field(
        None, description="each agent's time for a minibatch step, stragglers and jitter. "
        "Default: computing takes no time")
    seed: NonNegativeInt | None = Field(
        None, description="seed of the network's draws (latencies, stragglers, jitter). "
        "Default: training.seed")

    @field_validator("links_file")
    @classmethod
    def _links(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        base = (info.context or {}).get("base", Path.cwd())
        path = user_path(value, base)
        if not path.is_file():
            raise ValueError(f"file not found: {path}")
        read_links(path)
        return str(path.resolve())
