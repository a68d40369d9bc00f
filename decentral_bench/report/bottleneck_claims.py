"""The server-bottleneck study's claims (`scenarios/network/server_bottleneck.yaml`), judged
in simulated seconds to the scenario's target accuracy.

Jiang et al. (2017) argue for decentralized training because a parameter server is a
bottleneck: as the agents grow in number, the server's links serialize every model.
On the same modelled network, a gossip method should then reach the target before
FedAvg on many agents, while FedAvg, whose local epochs amortize each exchange, may lead
on few. Each claim compares the seconds to target of two groups seed by seed (see
`claims` for the verdicts); a seed that never reached the target leaves the claim
unjudged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from decentral_bench.report.claims import UNCLEAR, Claim, Estimate, Rule, compare, find
from decentral_bench.report.summary import Group, RunRecord

SCENARIO = "server_bottleneck"
KINDS = ("ring", "torus", "exponential")
FEW, MANY = 16, 256  # the sweep's smallest and largest numbers of agents


def seconds_to(record: RunRecord, target: float) -> float:
    """`sim_time_s` at the first evaluated round whose mean test accuracy reaches
    `target` (inf if none does, NaN without a clock)."""
    seconds = dict(record.curves.get("sim_time_s", []))
    for step, accuracy in record.curves.get("test_accuracy_mean", []):
        if accuracy >= target:
            return seconds.get(step, math.nan)
    return math.inf


def label(method: str, kind: str, agents: int, stragglers: float) -> str:
    """A group's label in the study: `CDSGD kind=ring agents=256 fraction=0.0`."""
    return f"{method} kind={kind} agents={agents} fraction={stragglers}"


def faster_claim(claim: str, first: str, second: str, target: float) -> Rule:
    """`first` reaches the target in less simulated time than `second`."""

    def judge(groups: Sequence[Group]) -> Claim | None:
        a, b = find(groups, first), find(groups, second)
        if a is None or b is None:
            return None
        times = [[seconds_to(record, target) for record in group.finished] for group in (a, b)]
        estimates = [Estimate.of([t for t in values if math.isfinite(t)]) for values in times]
        shown = f"s to {target:g}: {first} {estimates[0]}, {second} {estimates[1]}"
        missed = sum(math.isinf(t) for values in times for t in values)
        if missed:
            return Claim(claim, shown, UNCLEAR, f"{missed} run(s) did not reach the target")
        verdict, why = compare(estimates[0], estimates[1], "a<b")
        return Claim(claim, shown, verdict, why)

    return judge


def bottleneck_rules(target: float) -> list[Rule]:
    """The study's claims at `target` accuracy, on each graph family."""
    rules = []
    for kind in KINDS:
        rules += [
            faster_claim(f"{kind}, {MANY} agents: CDSGD reaches the target before FedAvg (the "
                    "server is the bottleneck)", label("CDSGD", kind, MANY, 0.0),
                    label("FedAvg", kind, MANY, 0.0), target),
            faster_claim(f"{kind}, {MANY} agents: CDMSGD reaches it before FedAvg",
                    label("CDMSGD", kind, MANY, 0.0), label("FedAvg", kind, MANY, 0.0), target),
            faster_claim(f"{kind}, {FEW} agents: FedAvg reaches it before CDSGD (the ranking flips "
                    "on few agents)", label("FedAvg", kind, FEW, 0.0),
                    label("CDSGD", kind, FEW, 0.0), target),
            faster_claim(f"{kind}, {MANY} agents, 10 % stragglers at 5×: CDSGD still reaches it "
                    "before FedAvg", label("CDSGD", kind, MANY, 0.1),
                    label("FedAvg", kind, MANY, 0.1), target),
        ]
    return rules
