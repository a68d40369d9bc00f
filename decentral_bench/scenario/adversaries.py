"""The `adversaries` section: which agents attack, from which round, and how.

What each attack computes is `strategies.attacks`; which agents a count or a fraction picks
is drawn in `decentral_bench.experiment.adversaries`.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, NonNegativeInt, PositiveFloat, field_validator

from decentral_bench.scenario.base import Count, Strict
from decentral_bench.scenario.rules import Is, IsSet, Needs, Not, OnlyWith, Shorthand
from strategies.attacks import DEFAULT_EPSILON

ONE_WAY = "give the attackers one way: agents, count or fraction"


class AttackConfig(Strict):
    """What every attacker does (`strategies.attacks` has the formulas)."""

    kind: Literal["sign_flip", "gaussian", "alie", "ipm", "dissensus", "label_flip"] = Field(
        description="sign_flip: publish −scale × its honest point (a server method's client: "
        "its update flipped); gaussian: its honest point plus N(0, std²) noise; alie: mean − "
        "z × std of its honest neighbours' points (Baruch et al. 2019); ipm: −epsilon × their "
        "mean (Xie et al. 2020); dissensus: its honest point pushed epsilon times against its "
        "honest neighbours' pull (He et al. 2022); label_flip: train honestly on labels "
        "C − 1 − y. alie, ipm and dissensus need a gossip method. Required")
    scale: PositiveFloat | None = Field(
        None, description="sign_flip: the factor s > 0 of −s × the honest point. Default: 1")
    std: PositiveFloat | None = Field(
        None, description="gaussian: standard deviation σ > 0 of the noise added to every "
        "coordinate. Default: 1")
    z: float | None = Field(
        None, description="alie: how many standard deviations below the mean. Default: from "
        "the agents n and attackers f as the authors' code computes it, "
        "Φ⁻¹((n − f − s) / (n − f)) with s = ⌊n/2 + 1⌋ − f (needs 1 ≤ f ≤ n/2)")
    epsilon: PositiveFloat | None = Field(
        None, description=f"ipm: ε > 0 of −ε × the honest mean (default "
        f"{DEFAULT_EPSILON['ipm']:g}); dissensus: ε > 0, the push against the neighbours' "
        f"pull (default {DEFAULT_EPSILON['dissensus']:g}; 1 cancels it)")

    rules = (
        OnlyWith("scale", Is("kind", "sign_flip", called="attack")),
        OnlyWith("std", Is("kind", "gaussian", called="attack")),
        OnlyWith("z", Is("kind", "alie", called="attack")),
        OnlyWith("epsilon", Is("kind", "ipm", "dissensus", called="attack")),
    )


class AdversariesConfig(Strict):
    """Agents that attack: a list, or a seeded draw of a count or a fraction of them; the
    metrics are then computed over the honest agents only."""

    agents: tuple[NonNegativeInt, ...] | None = Field(
        None, json_schema_extra={"minItems": 1, "uniqueItems": True},
        description="the attackers, numbered 0 .. topology.agents − 1 (distinct). Default: "
        "unset; give agents, count or fraction")
    count: NonNegativeInt | None = Field(
        None, description="draw this many attackers at random (seeded), fewer than "
        "topology.agents; 0 runs without attackers. Default: unset")
    fraction: float | None = Field(
        None, ge=0.0, lt=1.0, description="draw ⌊fraction × agents⌋ attackers at random "
        "(seeded), fraction in [0, 1). Default: unset")
    seed: NonNegativeInt | None = Field(
        None, description="seed of the attackers' draw. Default: training.seed")
    from_round: Count = Field(
        1, description="the first round whose published points are attacked (label_flip: "
        "whose minibatches are flipped)")
    attack: Annotated[AttackConfig, Shorthand("kind")] = Field(
        description="the attack: its kind alone (`attack: sign_flip`) or a mapping with its "
        "parameters (`{kind: alie, z: 1.5}`). Required")

    rules = (
        Needs(Not(IsSet("agents")), ("count", "fraction"), "say who attacks: agents "
              "[0, 5], count 2 or fraction 0.1"),
        OnlyWith("count", Not(IsSet("agents")), ONE_WAY),
        OnlyWith("fraction", Not(IsSet("agents")), ONE_WAY),
        OnlyWith("fraction", Not(IsSet("count")), ONE_WAY),
        OnlyWith("seed", Not(IsSet("agents")), "seed draws the attackers of count or "
                 "fraction; a list of agents needs none"),
    )

    @field_validator("agents")
    @classmethod
    def _distinct(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and (not value or len(set(value)) != len(value)):
            raise ValueError("list distinct agents, e.g. [0, 5]")
        return value


def attacker_count(adversaries: AdversariesConfig, agents: int) -> int:
    """How many of `agents` agents attack: the list's length, the count, or ⌊fraction × N⌋."""
    if adversaries.agents is not None:
        return len(adversaries.agents)
    if adversaries.count is not None:
        return adversaries.count
    return math.floor((adversaries.fraction or 0.0) * agents + 1e-9)
