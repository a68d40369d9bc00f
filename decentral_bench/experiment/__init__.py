"""One method's experiment: plan, sweeps, data, partitions, models, training, agents, metrics,
adversaries.
May import: strategies, scenario, network."""
