"""The network: graph families, Π and Assumption 2, failures (Π_k), bytes per message, the clock.
May import: strategies, scenario."""
