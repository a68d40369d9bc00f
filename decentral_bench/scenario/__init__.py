"""The scenario format: section models, rules, loading, errors, JSON Schema, key table, init.
May import: strategies (the method registry, the attacks' defaults).

- `base`, `sections`, `graph`, `methods`, `adversaries`, `schema`: the format, section by
  section;
- `rules`: rules between the keys of a section, for the loader and the schema alike;
- `export`: the JSON Schema for editors; `keytable`: the docs' table of every key;
- `loading`: reading a file, with `--set` style overrides;
- `scaffold`: a commented scenario to start from (`init`);
- `errors`: problems phrased as file, key path and what was expected.
"""

from decentral_bench.scenario.errors import ScenarioError
from decentral_bench.scenario.export import json_schema
from decentral_bench.scenario.graph import TopologyConfig
from decentral_bench.scenario.loading import load, parse, read_yaml, set_key
from decentral_bench.scenario.methods import MethodConfig
from decentral_bench.scenario.schema import UNSWEEPABLE, Scenario, is_scenario_key
from decentral_bench.scenario.sections import (
    AgentCrashConfig,
    DatasetConfig,
    FailuresConfig,
    LinkFailuresConfig,
    ModelConfig,
    PartitionConfig,
    ReportConfig,
    ResourcesConfig,
    ServerFailureConfig,
    TrackingConfig,
    TrainingConfig,
)

__all__ = [
    "UNSWEEPABLE", "AgentCrashConfig", "DatasetConfig", "FailuresConfig", "LinkFailuresConfig",
    "MethodConfig", "ModelConfig", "PartitionConfig", "ReportConfig", "ResourcesConfig",
    "Scenario", "ScenarioError", "ServerFailureConfig", "TopologyConfig", "TrackingConfig",
    "TrainingConfig", "is_scenario_key", "json_schema", "load", "parse", "read_yaml", "set_key",
]
