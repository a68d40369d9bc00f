"""What a person reads first in MLflow: the descriptions of the experiment, the parent
run and each child run (Markdown; `tracking` stores them as MLflow's description).

- the experiment and the parent: the scenario's name, a line saying what is
  compared, the scenario's `description` and its own leading comment block;
  the parent also carries the summary table;
- a child: the method and its variant, the graph and its λ2 (or why there is
  none), the seed, the step size and how many epochs its rounds amount to, who
  attacked how, and the network its rounds are timed on (`network:`), if any.
"""

from __future__ import annotations

from collections.abc import Sequence

from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.experiment.sweep import RunSpec
from decentral_bench.scenario import Scenario
from decentral_bench.scenario.network import (
    ComputeConfig,
    LatencyConfig,
    NetworkConfig,
    bandwidth_text,
    seconds_text,
)
from decentral_bench.tracking.params import resolved_options


def comment_header(text: str) -> str:
    """The comment lines a YAML file opens with, without their `#` (blank lines end it)."""
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("#"):
            break
        lines.append(stripped.lstrip("#").strip())
    return "\n".join(lines).strip()


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def compared(scenario: Scenario) -> str:
    """One line: the methods, the data, the agents and graph, the rounds, seeds, sweep."""
    partition = scenario.dataset.partition
    split = partition.kind + (f" α = {partition.alpha:g}" if partition.alpha is not None else "")
    training = scenario.training
    seeds = training.seeds or (training.seed,)
    budget = f"{training.rounds} rounds" if training.rounds is not None else \
        f"{training.epochs:g} epochs"
    line = (f"{_listed([m.name for m in scenario.methods])} on {scenario.dataset.name} "
            f"({split} split, {scenario.model.name} model), {scenario.topology.agents} agents "
            f"on a {scenario.topology.kind} graph, {budget}, "
            f"seed{'s' if len(seeds) > 1 else ''} {', '.join(str(s) for s in seeds)}")
    if scenario.sweep:
        line += "; sweeping " + "; ".join(f"{path} over {', '.join(str(v) for v in values)}"
                                          for path, values in scenario.sweep.items())
    return line


def headline(scenario: Scenario) -> str:
    return f"**{scenario.name}**: {compared(scenario)}."


def own_words(scenario: Scenario, header: str) -> list[str]:
    """The scenario's `description` and its file's comment header (quoted), if any."""
    parts = [scenario.description] if scenario.description else []
    if header and header != scenario.description:
        parts.append("\n".join(f"> {line}" if line else ">" for line in header.splitlines()))
    return parts


def scenario_note(scenario: Scenario, header: str = "") -> str:
    """The experiment's description: what the scenario compares and what its file says."""
    return "\n\n".join([headline(scenario), *own_words(scenario, header)])


def parent_note(scenario: Scenario, header: str, table: str,
                target_accuracy: float | None, runs: Sequence[tuple[str, str]] = ()) -> str:
    """The parent's description: what is compared, the summary table (Markdown), links
    to its child runs (name, address) in the "Model training" view, then the scenario's
    own words."""
    target = (f"target accuracy {target_accuracy:g}" if target_accuracy is not None
              else "set report.target_accuracy for rounds and epochs to a target")
    links = ["Runs: " + ", ".join(f"[{name}]({address})" for name, address in runs)] \
        if runs else []
    return "\n\n".join([
        headline(scenario), table.strip(),
        f"Means over seeds ({target}). Figures in `plots/`; the table also as `summary.json` "
        "(an MLflow table), `summary.csv` and `summary.md`; each method's figures as this "
        "run's metrics." + (" With attackers, every figure is over the honest agents (each "
                            "child says who attacked how)." if scenario.adversaries else ""),
        *links, *own_words(scenario, header)])


def _setting(key: str, value: object) -> str:
    if isinstance(value, dict):
        return f"{key}: " + ", ".join(_setting(k, v) for k, v in value.items())
    return f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}"


def method_line(plan: MethodPlan) -> str:
    """The method, its algorithm and the options that define its variant (after the
    registry's defaults), e.g. `CDMSGD (cdmsgd, momentum 0.9, variant nesterov)`."""
    details = [plan.algorithm] + [_setting(key, value) for key, value
                                  in resolved_options(plan).items() if value is not None]
    return f"**{plan.method.name}** ({'; '.join(details)})"


def graph_line(plan: MethodPlan) -> str:
    """Where the method's agents sit: the graph and its λ2, or why it has none."""
    if plan.definition.single_agent:
        return "one agent holding all the training data (no graph)"
    if not plan.is_gossip:
        return f"{plan.agents} clients of a server that aggregates (no graph)"
    topology = plan.scenario.topology
    lazy = ", lazy" if topology.lazy else ""
    return (f"a {topology.kind} graph of {plan.agents} agents ({topology.mixing} "
            f"mixing{lazy}), λ2 = {plan.topology.lambda2:.4g}")


def latency_text(latency: LatencyConfig) -> str:
    """`20 ms`, `log-normal, median 20 ms, σ 0.5`, `uniform 10 ms .. 30 ms`."""
    if latency.kind == "lognormal":
        return f"log-normal, median {seconds_text(latency.median or 0.0)}, σ {latency.sigma:g}"
    if latency.kind == "uniform":
        return f"uniform {seconds_text(latency.low or 0.0)} .. {seconds_text(latency.high or 0.0)}"
    return seconds_text(latency.seconds)


def compute_text(compute: ComputeConfig | None, batch_size: int) -> str:
    """A step's time, its stragglers and jitter, in words."""
    if compute is None:
        return "computing takes no time"
    step = compute.step_seconds if compute.step_seconds is not None else \
        batch_size / (compute.samples_per_second or 1.0)
    text = f"a minibatch step takes {seconds_text(step)}"
    stragglers = compute.stragglers
    if stragglers is not None:
        drawn = "drawn every round" if stragglers.resample else "fixed for the run"
        text += (f", {100 * stragglers.fraction:g} % stragglers {stragglers.slowdown:g}× "
                 f"slower ({drawn})")
    if compute.jitter is not None:
        text += f", jitter σ {compute.jitter:g}"
    return text


def network_line(network: NetworkConfig, batch_size: int, seed: int) -> str:
    """The network a run's rounds are timed on, in one sentence."""
    links = f"; per-link overrides from {network.links_file.rsplit('/', 1)[-1]}" \
        if network.links_file else ""
    return (f"Timed on a modelled network: latency {latency_text(network.latency)}; agents "
            f"{bandwidth_text(network.agent_uplink)} up, {bandwidth_text(network.agent_downlink)} "
            f"down; server {bandwidth_text(network.server_uplink)} up, "
            f"{bandwidth_text(network.server_downlink)} down{links}; "
            f"{compute_text(network.compute, batch_size)}; network seed "
            f"{network.seed if network.seed is not None else seed} (sim_time_s).")


def child_note(plan: MethodPlan, spec: RunSpec) -> str:
    """A child run's description: method, variant, graph and λ2, seed, step size, epochs."""
    text = (f"{method_line(plan)} on {graph_line(plan)}; seed {spec.seed}.\n\n"
            f"{plan.rounds} rounds at lr {plan.lr:g}, batch {plan.batch_size}: "
            f"{plan.epochs:.3g} epochs over each agent's data. {plan.definition.summary}.")
    adversaries = plan.adversaries
    if adversaries is not None:
        honest = plan.agents - len(adversaries.attackers)
        text += (f"\n\nAttackers: {adversaries.describe()}. Every figure is over the "
                 f"{honest} honest agents.")
    network = plan.scenario.network
    if network is not None:
        text += "\n\n" + network_line(network, plan.batch_size, plan.seed)
    if spec.swept:
        text += "\n\nSwept values: " + ", ".join(f"{path} = {value}" for path, value in spec.swept)
    if spec.shared:
        text += (f"\n\n{plan.method.name} does not read {', '.join(spec.shared)}: this one run "
                 "stands for every swept value of it.")
    return text
