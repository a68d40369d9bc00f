"""MLflow, and the only package that imports it: the store, run records, params, notes, provenance.
May import: strategies, scenario, network, experiment."""
