"""The server-bottleneck study's claims: seconds to target compared seed by seed."""

from __future__ import annotations

import math

from decentral_bench.report.bottleneck_claims import bottleneck_rules, label, seconds_to
from decentral_bench.report.claims import FAILS, HOLDS, UNCLEAR, judge
from decentral_bench.report.summary import RunRecord


def _run(name: str, seed: int, seconds_per_round: float,
         accuracy: tuple[float, ...] = (0.4, 0.5, 0.7, 0.8)) -> RunRecord:
    rounds = range(1, len(accuracy) + 1)
    return RunRecord(run_id=f"{name}-{seed}", config_hash=f"{name}-{seed}", label=name,
                     method=name.split()[0], seed=seed, status="FINISHED",
                     curves={"test_accuracy_mean": list(zip(rounds, accuracy, strict=True)),
                             "sim_time_s": [(k, k * seconds_per_round) for k in rounds]})


def test_seconds_to_target_is_the_clock_at_the_first_round_that_reaches_it() -> None:
    record = _run("CDSGD", 0, 0.5)
    assert seconds_to(record, 0.6) == 1.5
    assert seconds_to(record, 0.9) == math.inf


def test_the_ring_claims_on_many_and_few_agents() -> None:
    """On 256 agents CDSGD's rounds take 0.1 s and FedAvg's 2 s: CDSGD first (target at
    round 3 for both). On 16 agents FedAvg is first: the ranking flips."""
    records = []
    for seed, jitter in enumerate((0.0, 0.01, -0.01)):
        records += [_run(label("CDSGD", "ring", 256, 0.0), seed, 0.1 + jitter),
                    _run(label("FedAvg", "ring", 256, 0.0), seed, 2.0 + jitter),
                    _run(label("CDMSGD", "ring", 256, 0.0), seed, 1.0,
                         accuracy=(0.1, 0.2, 0.3, 0.4)),
                    _run(label("CDSGD", "ring", 16, 0.0), seed, 0.5 + jitter),
                    _run(label("FedAvg", "ring", 16, 0.0), seed, 0.2 + jitter)]
    many, unreached, few = judge(records, bottleneck_rules(0.6))
    assert [many.verdict, unreached.verdict, few.verdict] == [HOLDS, UNCLEAR, HOLDS]
    assert many.claim.startswith("ring, 256 agents: CDSGD reaches the target before FedAvg")
    assert many.figures == (f"s to 0.6: {label('CDSGD', 'ring', 256, 0.0)} 0.3000 ± 0.0245, "
                            f"{label('FedAvg', 'ring', 256, 0.0)} 6.0000 ± 0.0245")
    assert unreached.why == "3 run(s) did not reach the target"
    assert few.claim.startswith("ring, 16 agents: FedAvg reaches it before CDSGD")
    slower = [_run(label("CDSGD", "torus", 256, 0.0), seed, 3.0) for seed in range(3)]
    slower += [_run(label("FedAvg", "torus", 256, 0.0), seed, 2.0 + 0.01 * seed)
               for seed in range(3)]
    [torus] = judge(slower, bottleneck_rules(0.6))
    assert torus.verdict == FAILS
