"""Attacks: what an attacker publishes in place of its honest message.

An attacker is an agent that runs its method honestly (it mixes, steps and keeps an honest
state) but publishes the attack's output instead of its honest message m_b. On a gossip
method it sees what its own neighbours published, the messages it mixed this round: it is
omniscient within its neighbourhood and knows which of its neighbours are attackers (they
collude), nothing beyond. With H_b the honest neighbours of attacker b (b excluded), their
messages m^h and b's row of Π:

- `sign_flip` (the authors' bit flipping, scaled):  −s · m_b
- `gaussian`:  m_b + σ ξ, ξ ~ N(0, I) drawn from (seed, agent, round)
- `alie` (Baruch et al. 2019, "a little is enough"):  μ_H − z · σ_H, the coordinate-wise
  mean and (unbiased) standard deviation of the honest neighbours' messages, z from the
  agents n and attackers f as the authors' code computes it (`alie_z`)
- `ipm` (Xie et al. 2020, inner-product manipulation):  −ε · μ_H
- `dissensus` (He et al. 2022):  m_b − ε · Σ_{h∈H_b} π_bh (m^h − m_b) / Σ_{a∈Nb(b)∩A} π_ba.
  He et al.'s attacker aims at one honest target i and needs i's neighbours' points; an
  attacker here sees only its own neighbourhood, so it takes its own honest place as the
  target: it publishes its honest message pushed ε times against the pull of its honest
  neighbours, which amplifies the disagreement around it (the paper's formula with i = b)
- `label_flip` poisons the agent's data instead (labels y → C − 1 − y, as the authors' code),
  and publishes honestly.

`alie`, `ipm` and `dissensus` need honest neighbours: an attacker without one publishes its
honest message. On a server method (FedAvg) an attacker sees the global model w and its own
trained model w_b, and sends w − s (w_b − w) (`sign_flip`: its update flipped and scaled) or
w_b + σ ξ (`gaussian`).

Every function works on a stack of attackers (one row each) and is pure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np
import torch

from strategies.gossip import Parameters
from strategies.robust import Neighbourhoods

AttackKind = Literal["sign_flip", "gaussian", "alie", "ipm", "dissensus", "label_flip"]
NEEDS_NEIGHBOURS = ("alie", "ipm", "dissensus")  # gossip only: they read the honest points
MESSAGE_ATTACKS = ("sign_flip", "gaussian", *NEEDS_NEIGHBOURS)
SERVER_ATTACKS = ("sign_flip", "gaussian", "label_flip")
DEFAULT_EPSILON = {"ipm": 0.1, "dissensus": 1.5}  # the authors' code and experiments
NOISE_STREAM = 11  # keeps the Gaussian attack's draws apart from every other seeded stream


@dataclass(frozen=True)
class Attack:
    """An attack with its parameters resolved: `scale` s (sign_flip), `std` σ (gaussian),
    `z` (alie), `epsilon` ε (ipm, dissensus)."""

    kind: AttackKind
    scale: float = 1.0
    std: float = 1.0
    z: float = 0.0
    epsilon: float = 0.0

    @property
    def replaces_messages(self) -> bool:
        """Whether the attack replaces what the attacker publishes (all but label_flip)."""
        return self.kind in MESSAGE_ATTACKS

    def noise(self, like: Parameters, seed: int, agents: Sequence[int],
              server_round: int) -> list[torch.Tensor] | None:
        """The Gaussian attack's draws ξ for the attackers `agents` (rows of `like`) in
        `server_round`; None for every other attack."""
        return gaussian_noise(like, seed, agents, server_round) if self.kind == "gaussian" \
            else None


def alie_z(agents: int, attackers: int) -> float:
    """z of "a little is enough" as the authors' code computes it from the agents n and
    attackers f: s = ⌊n/2 + 1⌋ − f supporters, z = Φ⁻¹((n − f − s) / (n − f)). Defined for
    n ≥ 3 and 1 ≤ f ≤ n/2 (raises otherwise)."""
    supporters = math.floor(agents / 2 + 1) - attackers
    share = (agents - attackers - supporters) / (agents - attackers) \
        if agents > attackers else 0.0
    if attackers < 1 or not 0.0 < share < 1.0:
        raise ValueError(f"z from n = {agents} agents and f = {attackers} attackers needs "
                         "n ≥ 3 and 1 ≤ f ≤ n/2")
    return NormalDist().inv_cdf(share)


def sign_flip(honest: Parameters, scale: float) -> list[torch.Tensor]:
    """−s · m_b."""
    return [-scale * x for x in honest]


def gaussian(honest: Parameters, noise: Parameters, std: float) -> list[torch.Tensor]:
    """m_b + σ ξ, with ξ the standard normal draws `noise`."""
    return [x + std * n for x, n in zip(honest, noise, strict=True)]


def gaussian_noise(like: Parameters, seed: int, agents: Sequence[int],
                   server_round: int) -> list[torch.Tensor]:
    """ξ ~ N(0, I) for each of `agents` (rows of `like`) in `server_round`: drawn on the CPU
    from a generator seeded by (seed, agent, round), so every engine draws the same."""
    rows: list[list[torch.Tensor]] = []
    for agent in agents:
        key = np.random.SeedSequence([seed, NOISE_STREAM, agent, server_round])
        generator = torch.Generator().manual_seed(int(key.generate_state(1)[0]))
        rows.append([torch.randn(x.shape[1:], generator=generator, dtype=x.dtype)
                     for x in like])
    return [torch.stack([row[i] for row in rows]).to(x.device) for i, x in enumerate(like)]


def view_of_one(members: Sequence[Parameters], weights: Sequence[float], own: int,
                lying: Sequence[bool]) -> tuple[Neighbourhoods, torch.Tensor]:
    """One attacker's view of its neighbourhood (`members[i]` with weight `weights[i]`, its
    own at `own`, `lying[i]` for its fellow attackers and itself): its honest neighbours
    marked, and Σ_{a∈Nb(b)∩A} π_ba; a stack of one row."""
    everyone = Neighbourhoods.of_one(members, weights, own)
    device = everyone.mask.device
    liars = torch.tensor([list(lying)], device=device)
    view = Neighbourhoods(everyone.points, ~liars, everyone.weights, everyone.own)
    return view, torch.where(liars, everyone.weights,
                             torch.zeros_like(everyone.weights)).sum(dim=1)


def _honest_count(neighbourhoods: Neighbourhoods) -> torch.Tensor:
    return neighbourhoods.mask.sum(dim=1)


def _masked(p: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    keep = mask.view(*mask.shape, *[1] * (p.dim() - 2))
    return torch.where(keep, p, torch.zeros((), dtype=p.dtype, device=p.device))


def honest_mean(neighbourhoods: Neighbourhoods) -> list[torch.Tensor]:
    """μ_H: the coordinate-wise mean of the masked (honest) neighbours' messages."""
    count = _honest_count(neighbourhoods).clamp(min=1)
    return [_masked(p, neighbourhoods.mask).sum(dim=1)
            / count.view(-1, *[1] * (p.dim() - 2)).to(p.dtype)
            for p in neighbourhoods.points]


def honest_std(neighbourhoods: Neighbourhoods,
               means: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """σ_H: the coordinate-wise standard deviation of the honest neighbours' messages with
    Bessel's correction (torch.std's default, as the authors' code); 0 for a single one."""
    count = _honest_count(neighbourhoods)
    result = []
    for p, mu in zip(neighbourhoods.points, means, strict=True):
        deviation = _masked(p - mu.unsqueeze(1), neighbourhoods.mask)
        divisor = (count - 1).clamp(min=1).view(-1, *[1] * (mu.dim() - 1)).to(p.dtype)
        result.append(((deviation * deviation).sum(dim=1) / divisor).sqrt())
    return result


def alie(neighbourhoods: Neighbourhoods, z: float) -> list[torch.Tensor]:
    """μ_H − z σ_H."""
    means = honest_mean(neighbourhoods)
    return [mu - z * sigma for mu, sigma in
            zip(means, honest_std(neighbourhoods, means), strict=True)]


def ipm(neighbourhoods: Neighbourhoods, epsilon: float) -> list[torch.Tensor]:
    """−ε μ_H."""
    return [-epsilon * mu for mu in honest_mean(neighbourhoods)]


def dissensus(honest: Parameters, neighbourhoods: Neighbourhoods,
              attackers_weight: torch.Tensor, epsilon: float) -> list[torch.Tensor]:
    """m_b − ε Σ_{h∈H_b} π_bh (m^h − m_b) / Σ_{a∈Nb(b)∩A} π_ba (`attackers_weight`, one per
    row; a row whose attackers' weight is 0 publishes its honest message)."""
    weights = torch.where(neighbourhoods.mask, neighbourhoods.weights,
                          torch.zeros_like(neighbourhoods.weights))
    result = []
    for x, p in zip(honest, neighbourhoods.points, strict=True):
        pull = _masked((weights.view(*weights.shape, *[1] * (p.dim() - 2)).to(p.dtype))
                       * (p - x.unsqueeze(1)), neighbourhoods.mask).sum(dim=1)
        safe = torch.where(attackers_weight > 0, attackers_weight,
                           torch.ones_like(attackers_weight))
        pushed = x - epsilon * pull / safe.view(-1, *[1] * (x.dim() - 1)).to(x.dtype)
        result.append(torch.where((attackers_weight > 0).view(-1, *[1] * (x.dim() - 1)),
                                  pushed, x))
    return result


def gossip_attack(attack: Attack, honest: Parameters, neighbourhoods: Neighbourhoods,
                  attackers_weight: torch.Tensor,
                  noise: Parameters | None = None) -> list[torch.Tensor]:
    """What each attacker (row) publishes: `honest` holds its honest messages m_b;
    `neighbourhoods` its honest neighbours' messages (mask: the honest neighbours only) and
    its row of Π; `attackers_weight` Σ_{a∈Nb(b)∩A} π_ba (dissensus); `noise` the standard
    normal draws (gaussian). An attack that needs honest neighbours leaves a row that has
    none with its honest message."""
    if attack.kind == "sign_flip":
        return sign_flip(honest, attack.scale)
    if attack.kind == "gaussian":
        if noise is None:
            raise ValueError("the gaussian attack needs its noise draws")
        return gaussian(honest, noise, attack.std)
    if attack.kind == "alie":
        attacked = alie(neighbourhoods, attack.z)
    elif attack.kind == "ipm":
        attacked = ipm(neighbourhoods, attack.epsilon)
    elif attack.kind == "dissensus":
        attacked = dissensus(honest, neighbourhoods, attackers_weight, attack.epsilon)
    else:
        return list(honest)
    alone = (_honest_count(neighbourhoods) == 0)
    return [torch.where(alone.view(-1, *[1] * (a.dim() - 1)), x, a)
            for a, x in zip(attacked, honest, strict=True)]


def server_attack(attack: Attack, global_model: Parameters, trained: Parameters,
                  noise: Parameters | None = None) -> list[torch.Tensor]:
    """What an attacking client of a server method sends: w − s (w_b − w) for sign_flip,
    w_b + σ ξ for gaussian, its trained model w_b otherwise (label_flip poisons its data)."""
    if attack.kind == "sign_flip":
        return [w - attack.scale * (b - w) for w, b in zip(global_model, trained, strict=True)]
    if attack.kind == "gaussian":
        if noise is None:
            raise ValueError("the gaussian attack needs its noise draws")
        return gaussian(trained, noise, attack.std)
    return list(trained)


def flip_labels(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """y → C − 1 − y (the authors' label flipping: 9 − y on ten classes)."""
    return classes - 1 - labels
