"""`decentral-bench bench`: the engines timed against loops doing the same maths.
May import: strategies, scenario, network, experiment, the other engines."""

from decentral_bench.engines.benchmark.harness import (
    TABLE_COLUMNS,
    WorkloadResult,
    environment,
    run_workload,
    write_json,
)
from decentral_bench.engines.benchmark.machine import measure_rates
from decentral_bench.engines.benchmark.workloads import DEFAULT, PATHS, WORKLOADS

__all__ = ["DEFAULT", "PATHS", "TABLE_COLUMNS", "WORKLOADS", "WorkloadResult", "environment",
           "measure_rates", "run_workload", "write_json"]
