"""What the fork server imports, once, for every child it forks (`fork_server.PRELOAD`
names this module): the pool's module, with it torch, MLflow, Flower and the engines,
and what they import only when a run first needs it (`LAZY`). Their warnings are not
shown: the server's output is the terminal's, and a child shows or hides warnings as
its run's `verbose` says."""

from __future__ import annotations

import contextlib
import importlib
import warnings

# Left to each child, these took 3.8 s of a child's 8.3 s (16 agents, 300 rounds): the
# partitioners and their data sets library, scikit-learn's stratified split, torch's
# compiler stack that torch.func loads, MLflow's SQL store, the PNG writer.
LAZY = ("sklearn.model_selection", "sklearn.datasets", "flwr_datasets.partitioner",
        "datasets", "torch._dynamo", "mlflow.store.tracking.sqlalchemy_store",
        "mlflow.store.db.utils", "alembic.migration", "PIL.PngImagePlugin")

# Recorded and dropped rather than filtered: the libraries add filters of their own as
# they import, which would let some through.
with warnings.catch_warnings(record=True):
    importlib.import_module("decentral_bench.run.local_pool")
    for name in LAZY:
        with contextlib.suppress(ImportError):  # not installed: the child imports nothing
            importlib.import_module(name)
