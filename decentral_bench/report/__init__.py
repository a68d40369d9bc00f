"""What a finished scenario says: summary tables, plots, the papers' claims and their verdicts.
May import: strategies, scenario, network, experiment, tracking."""
