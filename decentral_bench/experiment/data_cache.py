"""Agents' shares of the data set kept on disk, for nodes that start afresh.

A Flower deployment may run the ClientApp in a new process for each message
(Flower's default on a SuperNode), and a long-lived node still starts cold
after a restart. Either way, loading a data set and splitting it over the
agents imports scikit-learn or torchvision and takes seconds; reading one
agent's share back takes milliseconds. The cache holds, per data key, one file
per agent (`agent-J.pt`: its partition) and one shared file (`shared.pt`: the
test samples the agents evaluate on, the common training samples they measure
training loss on, and the data set's shape).

The data key hashes exactly what decides the shares: the dataset section,
the seed, the number of agents, `training.eval_samples` and
`training.train_evaluation` (and the cache's format), so every method and
every learning rate of a scenario shares them.
Files are written to a temporary name and renamed, so nodes that fill the same
folder at once never read a half-written file. Delete the folder to rebuild.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from decentral_bench.experiment.agent import AgentData
from decentral_bench.experiment.plan import MethodPlan

CACHE_FORMAT = 1


def default_cache_folder() -> Path:
    """`$XDG_CACHE_HOME/decentral-bench/agents` (`~/.cache/...` when unset)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "decentral-bench" / "agents"


def data_key(plan: MethodPlan) -> str:
    """A hash of what decides every agent's share of the data under `plan`."""
    decided_by = {
        "format": CACHE_FORMAT,
        "dataset": plan.scenario.dataset.model_dump(mode="json"),
        "seed": plan.seed,
        "agents": plan.agents,
        "eval_samples": plan.scenario.training.eval_samples,
        "train_evaluation": plan.scenario.training.train_evaluation,
    }
    text = json.dumps(decided_by, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _save(contents: dict[str, Any], path: Path) -> None:
    """Write `contents` to `path` atomically (a temporary file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(contents, file)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _load(path: Path) -> dict[str, Any] | None:
    """The contents of a cache file, or None when it is missing or unreadable."""
    if not path.exists():
        return None
    try:
        return torch.load(path, weights_only=True)
    except Exception:  # a torn or foreign file (the unpickler raises many kinds): made anew
        return None


def cached_agent_data(plan: MethodPlan, agent: int, folder: Path) -> AgentData:
    """Agent `agent`'s share of the data under `plan`: read from `folder` when it is
    there, otherwise taken from the data set and written there."""
    entry = folder / data_key(plan)
    own, shared = _load(entry / f"agent-{agent}.pt"), _load(entry / "shared.pt")
    if own is not None and shared is not None:
        return AgentData(features=own["features"], labels=own["labels"],
                         common=shared["common"], test=shared["test"],
                         input_shape=tuple(shared["input_shape"]),
                         num_classes=int(shared["num_classes"]))
    data = AgentData.prepare(plan, agent)
    _save({"features": data.features, "labels": data.labels}, entry / f"agent-{agent}.pt")
    if shared is None:
        _save({"common": data.common, "test": data.test, "input_shape": list(data.input_shape),
               "num_classes": data.num_classes}, entry / "shared.pt")
    return data
