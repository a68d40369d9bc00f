"""`python -m decentral_bench` is the `decentral-bench` command."""

from decentral_bench.cli.entry import main

main()
