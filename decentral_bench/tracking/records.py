"""A child run as read back from the store: its identity, status and metric histories.

`CURVES` are the per-round metrics read back for reports; `tracking.store.load_records`
fills `RunRecord`s, and the report package summarises them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

CURVES = ("test_accuracy_mean", "train_accuracy_mean", "consensus_distance", "test_accuracy_std",
          "bytes_moved_total", "minibatch_loss_mean", "epochs", "phase",
          "consensus_distance_controlled", "average_model_test_accuracy", "attackers",
          "sim_time_s")

@dataclass
class RunRecord:
    """One child run as stored: its identity, status and metric histories."""

    run_id: str
    config_hash: str
    label: str
    method: str
    seed: int
    status: str
    algorithm: str = ""
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    wall_time_s: float = math.nan
    swept: dict[str, str] = field(default_factory=dict)  # swept key → its value, as tagged
    shared: tuple[str, ...] = ()  # swept keys its method ignores: one run for all their values
    error: str = ""  # why a FAILED or KILLED run ended (its `error` tag)

    def final(self, key: str) -> float:
        points = self.curves.get(key, [])
        return points[-1][1] if points else math.nan
