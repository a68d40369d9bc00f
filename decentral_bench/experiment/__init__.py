"""One method's experiment: plan, sweeps, data, models, training, agents, metrics, attackers.
May import: strategies, scenario, network."""
