"""Engines behind one seam (`base`): Flower, vectorized, the matrix-form reference, the observer.
May import: strategies, scenario, network, experiment, tracking (Flower only in `flower/`)."""
