"""Engines behind one seam (`base`): Flower, vectorized, the reference, the observer, round timing.
May import: strategies, scenario, network, experiment, tracking (Flower only in `flower/`)."""
