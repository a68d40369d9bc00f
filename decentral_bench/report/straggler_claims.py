"""AD-PSGD's claims that `scenarios/async/stragglers.yaml` tests (Lian et al., ICML 2018),
at each share of stragglers, as rules over the groups of its run (see `claims` for how a
verdict is reached):

- per epoch, asynchronous gossip ends close to synchronous gossip on the same ring: AD-PSGD
  against CDSGD's final test accuracy, where both have plateaued (the project's plateau
  rule, `claims.compare_at_plateau`);
- in time, it is far faster under stragglers: with 10 % and 30 % of the agents slow,
  AD-PSGD reaches the scenario's target accuracy in fewer simulated seconds than CDSGD on
  the ring (each seed's seconds to target, `bottleneck_claims.seconds_to`); without
  stragglers nothing is claimed (the table on the study's page shows the times).
"""

from __future__ import annotations

from decentral_bench.report.bottleneck_claims import faster_claim
from decentral_bench.report.claims import Rule
from decentral_bench.report.compression_claims import final_accuracy_claim

SCENARIO = "stragglers"
FRACTIONS = (0.0, 0.1, 0.3)
ASYNCHRONOUS, SYNCHRONOUS = "AD-PSGD ring", "CDSGD ring"


def label(method: str, fraction: float) -> str:
    """A group's label in the study: `AD-PSGD ring fraction=0.1`."""
    return f"{method} fraction={fraction}"


def straggler_rules(target: float) -> list[Rule]:
    """The study's claims at `target` accuracy, at each share of stragglers."""
    rules: list[Rule] = []
    for fraction in FRACTIONS:
        share = f"{fraction:.0%} stragglers at 5×"
        rules.append(final_accuracy_claim(
            f"AD-PSGD ends close to synchronous CDSGD's accuracy per epoch ({share})",
            label(ASYNCHRONOUS, fraction), label(SYNCHRONOUS, fraction), "a≈b"))
        if fraction == 0.0:
            continue
        rules.append(faster_claim(
            f"AD-PSGD reaches {target:g} in fewer simulated seconds than CDSGD ({share})",
            label(ASYNCHRONOUS, fraction), label(SYNCHRONOUS, fraction), target))
    return rules
