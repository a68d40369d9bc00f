"""The network: graph families, Π and Assumption 2, failures (Π_k per round), bytes per message.
May import: strategies, scenario."""
