"""`decentral-bench bench`: the engines timed against loops doing the same maths."""

from decentral_bench.benchmark.harness import (
    TABLE_COLUMNS,
    WorkloadResult,
    environment,
    run_workload,
    write_json,
)
from decentral_bench.benchmark.workloads import DEFAULT, PATHS, WORKLOADS

__all__ = ["DEFAULT", "PATHS", "TABLE_COLUMNS", "WORKLOADS", "WorkloadResult", "environment",
           "run_workload", "write_json"]
