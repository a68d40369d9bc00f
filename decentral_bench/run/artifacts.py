"""What a child run logs besides its metrics: the failures it ran under, and its result, the
agents' average final model."""

from __future__ import annotations

import json

from decentral_bench.engines.base import FinalParameters, average_model
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.tracking.store import Tracker

FINAL_MODEL = "model/average.npz"  # each child's average final model, by parameter name


def log_failure_schedule(tracker: Tracker, run_id: str, plan: MethodPlan) -> None:
    """The failures of the scenario as params, what they mean for this method, and the
    round-by-round schedule as `failures/schedule.json`."""
    failures = plan.scenario.failures
    params: dict[str, str] = {}
    if failures.server is not None:
        params["server_failure"] = "not applicable" if plan.is_gossip else \
            f"after round {failures.server.round}, {failures.server.mode}"
    if failures.links is not None and not plan.is_gossip:
        params["link_failures"] = "not applicable"
    if failures.agents and plan.definition.single_agent:
        params["agent_failures"] = "not applicable"
    if params:
        tracker.log_params(run_id, params)
    if failures != type(failures)() and not plan.definition.single_agent:
        schedule = plan.failure_schedule.describe(plan.rounds)
        tracker.log_text(run_id, json.dumps(schedule, indent=2), "failures/schedule.json")


def log_final_model(tracker: Tracker, run_id: str, plan: MethodPlan,
                    final: FinalParameters) -> None:
    """The agents' average final model x̄ (FedAvg's global model), by parameter name, as
    `model/average.npz`: what a user takes away, and what a deployment is checked by."""
    names = [name for name, _ in plan.build_model().named_parameters()]
    tracker.log_arrays(run_id, dict(zip(names, average_model(final), strict=True)),
                       FINAL_MODEL)
