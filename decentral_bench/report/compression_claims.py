"""CHOCO-SGD's claims that `scenarios/compression/choco_ring.yaml` tests (Koloskova, Stich,
Jaggi, ICML 2019; Koloskova, Lin et al., ICLR 2020) on each ring size, as rules over the
groups of its run (see `claims` for how a verdict is reached).

- CHOCO with each compressor ends close to uncompressed CDSGD's test accuracy ...
- ... while its agents move 10–100× fewer bytes (an exact count, the same for every seed);
- naive compressed gossip degrades: naive top-10 % ends below CHOCO with the same
  compressor, and below CDSGD.

A claim about final accuracy is *not yet converged* where a run it compares had not
stopped improving (the project's plateau rule, `claims.compare_at_plateau`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from decentral_bench.report.claims import (
    FAILS,
    HOLDS,
    UNCLEAR,
    Claim,
    Estimate,
    Rule,
    compare_at_plateau,
    figure,
    final,
    find,
)
from decentral_bench.report.summary import Group

SIZES = (16, 32)
BASELINE, NAIVE = "CDSGD", "naive top-10%"
CHOCO = ("CHOCO top-1%", "CHOCO top-10%", "CHOCO sign", "CHOCO qsgd-4bit")
FEWER_BYTES = 10.0  # the claim's lower end: 10× fewer bytes


def _label(method: str, agents: int) -> str:
    return f"{method} agents={agents}"


def _accuracy(group: Group) -> Estimate:
    return figure(group, final("test_accuracy_mean"))


def _bytes(group: Group) -> Estimate:
    return figure(group, final("bytes_moved_total"))


def final_accuracy_claim(claim: str, a: str, b: str, expect: str) -> Rule:
    """A claim comparing the final test accuracy of groups `a` and `b`; *not yet converged*
    where a run of either had not stopped improving."""

    def judge(groups: Sequence[Group]) -> Claim | None:
        first, second = find(groups, a), find(groups, b)
        if first is None or second is None:
            return None
        ours, theirs = _accuracy(first), _accuracy(second)
        figures = f"final test acc.: {first.label} {ours}, {second.label} {theirs}"
        verdict, why = compare_at_plateau((first, second), ours, theirs, expect)
        return Claim(claim, figures, verdict, why)

    return judge


def fewer_bytes_claim(method: str, agents: int) -> Rule:
    """`method` moves at least `FEWER_BYTES` times fewer bytes than CDSGD."""

    def judge(groups: Sequence[Group]) -> Claim | None:
        ours = find(groups, _label(method, agents))
        theirs = find(groups, _label(BASELINE, agents))
        if ours is None or theirs is None:
            return None
        moved, baseline = _bytes(ours), _bytes(theirs)
        ratio = baseline.mean / moved.mean if moved.mean > 0 else math.nan
        figures = (f"MB moved: {ours.label} {moved.mean / 1e6:.4g}, {theirs.label} "
                   f"{baseline.mean / 1e6:.4g}: {ratio:.3g}× fewer")
        if math.isnan(ratio):
            return Claim("... at 10–100× fewer bytes", figures, UNCLEAR,
                         "bytes moved are missing")
        verdict = HOLDS if ratio >= FEWER_BYTES else FAILS
        why = f"{ratio:.3g}× {'≥' if verdict == HOLDS else '<'} {FEWER_BYTES:g}× (exact counts)"
        return Claim("... at 10–100× fewer bytes", figures, verdict, why)

    return judge


def _size_rules(agents: int) -> list[Rule]:
    rules: list[Rule] = []
    for method in CHOCO:
        rules.append(final_accuracy_claim(
            f"{method} ends close to uncompressed CDSGD ({agents} agents)",
            _label(method, agents), _label(BASELINE, agents), "a≈b"))
        rules.append(fewer_bytes_claim(method, agents))
    rules.append(final_accuracy_claim(
        f"Naive compression degrades: {NAIVE} ends below CHOCO top-10% ({agents} agents)",
        _label(NAIVE, agents), _label("CHOCO top-10%", agents), "a<b"))
    rules.append(final_accuracy_claim(
        f"... and below uncompressed CDSGD ({agents} agents)", _label(NAIVE, agents),
        _label(BASELINE, agents), "a<b"))
    return rules


CHOCO_RING: list[Rule] = [rule for agents in SIZES for rule in _size_rules(agents)]


def bytes_table(groups: Sequence[Group]) -> str:
    """Each group's final test accuracy, MB moved and bytes against CDSGD on its ring
    (Markdown)."""
    lines = ["| method | final test acc. | MB moved | fewer bytes than CDSGD |",
             "|---|---|---|---|"]
    for group in groups:
        agents = group.label.rsplit("agents=", 1)[-1]
        baseline = find(groups, f"{BASELINE} agents={agents}")
        moved = _bytes(group).mean
        ratio = "–" if baseline is None or not moved else \
            f"{_bytes(baseline).mean / moved:.3g}×"
        lines.append(f"| {group.label} | {_accuracy(group)} | {moved / 1e6:.4g} | {ratio} |")
    return "\n".join(lines) + "\n"
