"""The engines a scenario can run on, by name (`resources.engine`, `--engine`)."""

from __future__ import annotations

from decentral_bench.engines.base import Engine
from decentral_bench.engines.flower.simulation import FlowerEngine
from decentral_bench.engines.vectorized import VectorizedEngine
from decentral_bench.scenario import Scenario


def build_engine(scenario: Scenario, verbose: bool = False) -> Engine:
    """The engine `scenario.resources.engine` names, set up from its resources."""
    resources = scenario.resources
    if resources.engine == "vectorized":
        return VectorizedEngine(chunk=resources.agent_chunk)
    return FlowerEngine(verbose=verbose)
