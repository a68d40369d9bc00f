"""The strategy layer: how each method moves parameters between agents.

- `gossip_router`: the serverless ServerApp side of CDSGD; routes arrays along
  the graph's edges and never aggregates.
- `cdsgd`: the CDSGD update rule as a pure function (Jiang et al. 2017, eq. 5).
- `fedavg`: Flower's stock FedAvg, configured for a scenario.
- `centralized_sgd`: centralized SGD as CDSGD on a one-node graph.
"""
