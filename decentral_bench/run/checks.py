"""Everything `run` checks before it trains, without training or starting Ray.

`validate` and `run` share `check_scenario`, so a file `validate` passes does not
fail at `run` for a reason that could have been seen. For every sweep
combination and seed it checks that the resolved scenario parses, that its
graph builds (files named in it read, Assumption 2 holds), that the data set's
files are there, that each method's split of the data over its agents can be
made, that the model fits the data, that each method's update rule is stable on
the graph's mixing matrix, that every agent has the neighbours its method's robust
aggregation screens, that the network's per-link overrides name edges of the graph, and
that the requested device (and GPUs per run) exist.
Every problem names the file, the combination and the key. Some settings run but
deserve a word (a momentum form that barely shrinks the agents' disagreement on the
graph, a robust aggregation in a form it was not designed for): they are warnings, printed
by `validate` and `run` without failing them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from decentral_bench import scenario as scenario_file
from decentral_bench.engines.flower.ray_cluster import scenario_ray_address
from decentral_bench.experiment.data import (
    DataError,
    check_available,
    load_dataset,
    partition_indices,
)
from decentral_bench.experiment.models import build_model
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.experiment.sweep import RunSpec, expand
from decentral_bench.network.schedules import GraphSchedule
from decentral_bench.network.topology import TopologyError, build_topology
from decentral_bench.run.share import cuda_devices, gpu_problem
from decentral_bench.scenario import Scenario, ScenarioError
from decentral_bench.scenario.graph import DIRECTED_KINDS, RANDOM_FAMILIES
from decentral_bench.scenario.network import read_links
from strategies.registry import method


def _where(spec: RunSpec, key: str) -> str:
    """`key`, prefixed with the sweep combination it failed in (if the file sweeps); for a
    method on a graph of its own (checked in a scenario that lists it alone), named by its
    place in the file: `methods[2]`, `methods[2].topology.schedule`."""
    index = spec.own_graph_index
    if index is not None:
        if key.startswith("methods[0]"):
            key = f"methods[{index}]" + key.removeprefix("methods[0]")
        elif key.startswith(("topology", "network.links_file")):
            key = f"methods[{index}].{key}"
    if not spec.swept:
        return key
    combination = ", ".join(f"{path}={value!r}" for path, value in spec.swept)
    return f"sweep ({combination}): {key}"


def _device_problem(scenario: Scenario) -> str | None:
    if scenario.resources.device == "cuda" and not torch.cuda.is_available():
        return "is 'cuda' but this machine has no CUDA device; use 'auto' or 'cpu'"
    return None


def _gpus_problem(scenario: Scenario) -> str | None:
    """GPUs per run that this machine does not have (a Ray cluster's are checked when
    `run` joins it)."""
    if scenario_ray_address(scenario.resources) is not None:
        return None
    return gpu_problem(scenario, cuda_devices())


def _partition_problem(scenario: Scenario) -> str | None:
    """Split the data over every agent count the scenario's methods use."""
    dataset, seed = scenario.dataset, scenario.training.seed
    counts = {1 if method(m.algorithm).single_agent else scenario.topology.agents
              for m in scenario.methods}
    for agents in sorted(counts):
        try:
            parts = partition_indices(dataset, seed, agents)
        except DataError as error:
            return str(error)
        except ValueError as error:  # flwr-datasets' partitioners reject some shapes
            return f"cannot split the data over {agents} agents: {error}"
        if len(parts) != agents:
            return f"the split gives {len(parts)} parts for {agents} agents"
    return None


def _model_problem(scenario: Scenario) -> str | None:
    data = load_dataset(scenario.dataset, scenario.training.seed)
    try:
        build_model(scenario.model, data.input_shape, data.num_classes, scenario.training.seed)
    except ValueError as error:
        return str(error)
    return None


# λN this close to a rule's bound counts as on it: the Metropolis weights of an even ring
# put λN at −1/3 exactly, which an eigensolver returns a rounding error either side of.
BOUND_TOLERANCE = 1e-9
SLOW_CONTRACTION = 0.9  # a mode shrunk by less than 10 % a round is warned about

Finding = tuple[str, str]  # (key, what is wrong or worth knowing)


def _stability_findings(scenario: Scenario) -> tuple[list[Finding], list[Finding]]:
    """(problems, warnings) for each method whose update rule diverges (or stalls) on the
    scenario's Π (CDMSGD-Nesterov on the iterates when λN ≤ −1/(1 + 2μ), D² when
    λN ≤ −1/3) or needs a Π the graph has not (a doubly stochastic method on a directed
    graph), or shrinks the agents' disagreement along Π's last eigenvector by less than
    10 % a round (CDMSGD-Nesterov on the iterates close above its bound)."""
    problems: list[Finding] = []
    warnings: list[Finding] = []
    for index, entry in enumerate(scenario.methods):
        if entry.topology is not None and len(scenario.methods) > 1:
            continue  # on a graph of its own: checked in its own run's scenario
        plan = MethodPlan.of(scenario, entry.name)
        if not plan.has_graph:
            continue
        kind = plan.scenario.topology.kind  # the method's own graph, where it has one
        if kind in DIRECTED_KINDS and plan.definition.mixing == "doubly_stochastic":
            problems.append((f"methods[{index}]", (
                f"'{entry.name}' ({entry.algorithm}) needs a doubly stochastic Π, which the "
                f"{kind} graph has not (its Π is column-stochastic); use "
                "algorithm: sgp (push-sum), which de-biases with its weights, or an "
                "undirected graph")))
            continue
        bound = plan.definition.lowest_eigenvalue(plan.options)
        if bound is None:
            continue
        lambda_n = plan.topology.lambda_n  # the method's graph (built once per plan)
        topology = plan.scenario.topology
        drawn = "" if topology.seed is not None or topology.kind not in RANDOM_FAMILIES \
            else f" (drawn with training seed {plan.seed})"
        form = f"'{entry.name}' ({bound.rule})"
        if lambda_n <= bound.value + BOUND_TOLERANCE:
            problems.append((f"methods[{index}]", (
                f"{form} diverges on the graph{drawn}: Π's smallest eigenvalue λN = "
                f"{lambda_n:.4f} is at or below {bound.condition} = {bound.value:.4f}, "
                f"{bound.consequence}; {bound.fixes}")))
            continue
        modulus = plan.definition.disagreement_modulus(plan.options, lambda_n)
        if modulus is not None and modulus > SLOW_CONTRACTION:
            warnings.append((f"methods[{index}]", (
                f"{form} is close to diverging on the graph{drawn}: Π's smallest eigenvalue "
                f"λN = {lambda_n:.4f} is just above {bound.condition} = {bound.value:.4f}, so "
                f"the agents' disagreement along its eigenvector shrinks by only "
                f"{1 - modulus:.1%} a round (|z| = {modulus:.3f}, the larger root of "
                "z² − λN(1 + μ)z + λNμ) while the gradient noise feeds it: accuracy and Ξ² "
                "then measure the momentum form more than the graph; momentum_buffer: local "
                "(the default) or topology.lazy: true avoid it")))
    return problems, warnings


def _sampling_problems(scenario: Scenario) -> list[tuple[str, str]]:
    """(key, problem) for each server method whose rounds sample fewer clients than its rule
    needs (Bulyan: 4f + 3; Flower's Bulyan aggregates nothing in such a round)."""
    found = []
    for index, entry in enumerate(scenario.methods):
        plan = MethodPlan.of(scenario, entry.name)
        if plan.is_gossip:
            continue
        needed = plan.definition.min_clients(plan.options)
        sampled = max(int(plan.agents * plan.fraction), 1)
        if sampled < needed:
            given = ", ".join(f"{key} {plan.option(key)}" for key in plan.definition.options
                              if getattr(entry, key) is not None)
            found.append((f"methods[{index}]", (
                f"'{entry.name}' ({entry.algorithm}{', ' + given if given else ''}) needs at "
                f"least {needed} clients a round, but its rounds sample {sampled} of "
                f"{plan.agents}; lower num_malicious_nodes, raise fraction or add agents")))
    return found


def _aggregation_problems(scenario: Scenario) -> list[tuple[str, str]]:
    """(key, problem) for each method whose robust aggregation screens more neighbours than
    some agent has: trimmed_mean and krum need a degree ≥ 2b + 1 everywhere."""
    found = []
    for index, entry in enumerate(scenario.methods):
        if entry.topology is not None and len(scenario.methods) > 1:
            continue  # on a graph of its own: checked in its own run's scenario
        plan = MethodPlan.of(scenario, entry.name)
        needed = plan.aggregation.min_degree if plan.has_graph else 0
        if needed == 0:
            continue
        matrix = plan.topology.mixing_matrix  # the method's graph, where it has one
        degrees = np.count_nonzero(matrix - np.diag(np.diag(matrix)), axis=1)
        short = np.flatnonzero(degrees < needed)
        if len(short):
            agent = int(short[0])
            found.append((f"methods[{index}].aggregation", (
                f"{plan.aggregation.kind} with b = {plan.aggregation.b} needs every agent's "
                f"degree ≥ 2b + 1 = {needed}, but agent {agent} has degree "
                f"{int(degrees[agent])} on the {plan.scenario.topology.kind} graph"
                f"{f' ({len(short)} agents short)' if len(short) > 1 else ''}; use a denser "
                "graph, a smaller b, or median or clipped_gossip")))
    return found


def _aggregation_form_warnings(scenario: Scenario) -> list[Finding]:
    """(key, warning) for each method that runs a robust aggregation in combine-then-adapt
    form (a rule that is not `ahead`: CDSGD, CDMSGD): its gradient is taken at the agent's
    own point and added to an aggregate a robust rule may have moved far from it."""
    found = []
    for index, entry in enumerate(scenario.methods):
        kind = entry.aggregation.kind if entry.aggregation is not None else "mean"
        if kind == "mean" or MethodPlan.of(scenario, entry.name).update_rule.ahead:
            continue
        found.append((f"methods[{index}].aggregation", (
            f"'{entry.name}' runs {kind} in {entry.algorithm}'s combine-then-adapt form: its "
            "gradient is taken at the agent's own point and added to an aggregate the rule "
            "may have moved far from it (the median then does not train: 0.22 test accuracy "
            "on a 16-agent torus where it reaches 0.77 adapt then combine); algorithm: "
            "dsgd_atc aggregates stepped points, as the robust rules' authors run them")))
    return found


def _links_problem(scenario: Scenario) -> str | None:
    """The first line of the network's links file that names no edge of the graph."""
    network = scenario.network
    if network is None or network.links_file is None:
        return None
    try:
        graph = build_topology(scenario.topology, scenario.training.seed).graph
    except (TopologyError, ValueError, OSError):
        return None  # the topology's own check names the problem
    for link in read_links(network.links_file):
        if not graph.has_edge(link.first, link.second):
            return (f"{Path(network.links_file).name} line {link.line}: {link.first}–"
                    f"{link.second} is not an edge of the {scenario.topology.kind} graph of "
                    f"{graph.number_of_nodes()} agents; list only its edges (lines 'j l "
                    "latency bandwidth') or remove the line")
    return None


def _schedule_problem(scenario: Scenario) -> str | None:
    """What breaks the time-varying graph: failures on it, a round's Π_k that is not
    doubly stochastic, a window of rounds whose union is disconnected."""
    topology = scenario.topology
    changing = topology.schedule is not None or topology.kind in DIRECTED_KINDS
    if changing and (scenario.failures.agents or scenario.failures.links is not None):
        return ("failures are not modelled on a time-varying or directed graph: drop "
                f"topology.{'schedule' if topology.schedule else 'kind'} or the failures "
                "section's agents and links")
    if topology.schedule is None:
        return None
    seed = scenario.training.seed
    try:
        GraphSchedule(topology, build_topology(topology, seed), seed).check(
            scenario.training.rounds or 0)
    except (TopologyError, ValueError, OSError) as error:
        return str(error)
    return None


def _checks(scenario: Scenario) -> list[tuple[str, Callable[[], str | None]]]:
    """(key, check) pairs, in the order a run meets them; a check returns a problem."""

    def topology() -> str | None:
        try:
            build_topology(scenario.topology, scenario.training.seed)
        except (TopologyError, ValueError, OSError) as error:
            return str(error)
        return None

    def data() -> str | None:
        try:
            check_available(scenario.dataset)
            load_dataset(scenario.dataset, scenario.training.seed)
        except DataError as error:
            return str(error)
        except OSError as error:
            where = error.filename or scenario.dataset.root
            return f"cannot read {where}: {error.strerror or error}"
        return None

    return [("resources.device", lambda: _device_problem(scenario)),
            ("resources.gpus_per_run", lambda: _gpus_problem(scenario)),
            ("topology", topology), ("topology.schedule", lambda: _schedule_problem(scenario)),
            ("network.links_file", lambda: _links_problem(scenario)),
            ("dataset", data),
            ("dataset.partition", lambda: _partition_problem(scenario)),
            ("model", lambda: _model_problem(scenario))]


def findings_of(specs: list[RunSpec]) -> tuple[list[Finding], list[Finding]]:
    """Every (key, problem) of the runs and every (key, warning), each distinct one once.
    A combination whose data cannot be read skips the checks that need it."""
    problems: list[Finding] = []
    warnings: list[Finding] = []
    seen: set[str] = set()
    for spec in specs:
        resolved = spec.scenario
        if resolved.to_json() in seen:  # the scenario's other methods: checked already
            continue
        seen.add(resolved.to_json())
        broken = False
        for key, check in _checks(resolved):
            problem = check()
            if problem is None:
                continue
            broken = True
            found = (_where(spec, key), problem)
            if found not in problems:
                problems.append(found)
            if key == "dataset":
                break
        if broken:
            continue
        unstable, slow = _stability_findings(resolved)
        problems += [found for found in ((_where(spec, key), text)
                                         for key, text in [*unstable,
                                                           *_sampling_problems(resolved),
                                                           *_aggregation_problems(resolved)])
                     if found not in problems]
        warnings += [found for found in ((_where(spec, key), text) for key, text in
                                         [*slow, *_aggregation_form_warnings(resolved)])
                     if found not in warnings]
    return problems, warnings


def check_scenario(path: Path, overrides: dict[str, object] | None = None,
                   ) -> tuple[Scenario, list[RunSpec], list[Finding]]:
    """Load a scenario file (with `--set` overrides) and check every run it asks for as
    `run` would before training: the scenario, its runs and the warnings (settings that
    run but deserve a word). Raises `ScenarioError` naming each problem."""
    parsed = scenario_file.load(path, overrides)
    specs = expand(parsed, str(path))
    problems, warnings = findings_of(specs)
    if problems:
        raise ScenarioError(str(path), problems)
    return parsed, specs, warnings
