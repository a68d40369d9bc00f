"""The `decentral-bench` command line (a module per command, the console), the `flwr run` entry.
May import: everything. The console script is `decentral_bench.cli.entry:main`."""
