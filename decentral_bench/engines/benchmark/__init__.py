"""`decentral-bench bench`: the engines timed against loops doing the same maths.
May import: strategies, scenario, network, experiment, the other engines."""

from decentral_bench.engines.benchmark.harness import (
    TABLE_COLUMNS,
    WorkloadResult,
    environment,
    run_workload,
    write_json,
)
from decentral_bench.engines.benchmark.workloads import DEFAULT, PATHS, WORKLOADS

__all__ = ["DEFAULT", "PATHS", "TABLE_COLUMNS", "WORKLOADS", "WorkloadResult", "environment",
           "run_workload", "write_json"]
