"""Centralized SGD: CDSGD on the one-node graph Π = [1] holding all the data.

With a single agent, eq. 5 reduces to x_{k+1} = x_k − α g(x_k): plain SGD,
run through the same router and client code as the decentralized methods.
"""

from __future__ import annotations

from decentral_bench.topology import Topology, single_agent


def centralized_topology() -> Topology:
    """The graph centralized SGD runs on."""
    return single_agent()
