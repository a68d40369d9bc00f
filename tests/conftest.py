"""Shared fixtures: small scenarios and a throw-away MLflow store."""

from __future__ import annotations

from pathlib import Path

import pytest

from decentral_bench.scenario import Scenario, parse


def tiny_scenario(**overrides: object) -> Scenario:
    """A digits scenario small enough to simulate in seconds."""
    data: dict = {
        "name": "tiny",
        "dataset": {"name": "digits", "partition": "iid", "test_fraction": 0.2},
        "model": {"name": "mlp", "hidden": [16]},
        "topology": {"kind": "ring", "agents": 4},
        "training": {"rounds": 5, "local_steps": 1, "batch_size": 16, "lr": 0.1, "seed": 3},
        "methods": [{"name": "CDSGD", "algorithm": "cdsgd"}],
    }
    for key, value in overrides.items():
        section, _, field = key.partition("__")
        if field:
            data[section][field] = value
        else:
            data[section] = value
    return parse(data, "<test>")


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    """A fresh sqlite MLflow store in a temporary folder."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"
