"""One method's experiment: plan, sweeps, data, partitions, models, training, agents, metrics.
May import: strategies, scenario, network."""
