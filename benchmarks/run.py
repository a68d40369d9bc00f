"""Benchmark harness: `python benchmarks/run.py [WORKLOAD ...] [--rounds N] [--output FILE]`.

The same as `decentral-bench bench`: the engines against loops doing the identical
computation, workload by workload.
"""

from decentral_bench.cli import cli

if __name__ == "__main__":
    cli(["bench", *__import__("sys").argv[1:]])
