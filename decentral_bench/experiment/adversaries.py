"""Who attacks in a run, and how: the scenario's `adversaries` section resolved for one
method (the attackers drawn, the attack's defaults filled in).

Both engines, the ClientApp and the observer read the attackers from here, so they agree
on who lies and on which figures are honest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from decentral_bench.scenario.adversaries import AdversariesConfig, attacker_count
from strategies.attacks import DEFAULT_EPSILON, Attack, alie_z

ATTACKER_STREAM = 8  # keeps the attackers' draw apart from every other seeded stream


@dataclass(frozen=True)
class Adversaries:
    """The attackers of a run, their attack with every parameter resolved, and the first
    round it acts in."""

    attackers: frozenset[int]
    attack: Attack
    from_round: int

    def active(self, server_round: int) -> bool:
        """Whether the attackers replace their published points in `server_round`."""
        return self.attack.replaces_messages and server_round >= self.from_round

    def flips_labels_of(self, agent: int) -> bool:
        return self.attack.kind == "label_flip" and agent in self.attackers

    def describe(self) -> str:
        """Who attacks how, in words: `agents 3 and 7: alie (z 1.5) from round 1`."""
        names = sorted(self.attackers)
        agents = (f"agent {names[0]}" if len(names) == 1 else
                  "agents " + ", ".join(str(a) for a in names[:-1]) + f" and {names[-1]}")
        parameter = {"sign_flip": f"scale {self.attack.scale:g}",
                     "gaussian": f"std {self.attack.std:g}", "alie": f"z {self.attack.z:.4g}",
                     "ipm": f"ε {self.attack.epsilon:g}",
                     "dissensus": f"ε {self.attack.epsilon:g}"}.get(self.attack.kind)
        how = self.attack.kind + (f" ({parameter})" if parameter else "")
        return f"{agents}: {how} from round {self.from_round}"


def draw_attackers(config: AdversariesConfig, agents: int, seed: int) -> frozenset[int]:
    """The listed attackers, or a seeded draw of `count` (⌊fraction × N⌋) of the agents."""
    if config.agents is not None:
        return frozenset(config.agents)
    count = attacker_count(config, agents)
    draw = np.random.default_rng([seed if config.seed is None else config.seed,
                                  ATTACKER_STREAM])
    return frozenset(int(a) for a in draw.choice(agents, count, replace=False))


def resolve(config: AdversariesConfig | None, agents: int, seed: int) -> Adversaries | None:
    """The run's adversaries, or None when nobody attacks (no section, or none drawn)."""
    if config is None:
        return None
    attackers = draw_attackers(config, agents, seed)
    if not attackers:
        return None
    given = config.attack
    kind = given.kind
    attack = Attack(
        kind=kind,
        scale=given.scale if given.scale is not None else 1.0,
        std=given.std if given.std is not None else 1.0,
        z=given.z if given.z is not None else
        (alie_z(agents, len(attackers)) if kind == "alie" else 0.0),
        epsilon=given.epsilon if given.epsilon is not None else DEFAULT_EPSILON.get(kind, 0.0))
    return Adversaries(attackers=attackers, attack=attack, from_round=config.from_round)
