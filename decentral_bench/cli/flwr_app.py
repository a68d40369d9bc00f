"""The ServerApp that `flwr run .` loads (`[tool.flwr.app.components]` in pyproject.toml).

It reads the scenario path and the method from the run config and records the
method to MLflow the way `decentral-bench run` does, on the grid Flower gives
it (a simulation's or a real deployment's SuperLink). It sits at the top of the
import graph: it uses the runner, and nothing imports it. The engine it runs on is
`decentral_bench.engines.flower.grid`.

Run config keys: `scenario` (a path; relative ones also from the app's folder),
`method` (a method name in it) and `wait-for-nodes` (seconds to wait for every
agent's SuperNode to connect; 300 by default). A run that `flwr stop` ends, or
whose ServerApp process is stopped, is KILLED in MLflow; a method that fails is
FAILED there and fails the Flower run too.
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from decentral_bench import scenario as scenario_file
from decentral_bench.engines.flower.grid import GridEngine, node_wait, prompt_reply_pulls
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.run.runner import record_method

APP_FOLDER = Path(__file__).resolve().parents[2]  # where pyproject.toml is


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Entry point of `flwr run .`: run config keys `scenario`, `method`, `wait-for-nodes`."""
    path = Path(str(context.run_config["scenario"]))
    if not path.is_absolute() and not path.exists():  # relative to the app's own folder
        path = APP_FOLDER / path
    scenario = scenario_file.load(path)
    plan = MethodPlan.of(scenario, str(context.run_config["method"]))
    with prompt_reply_pulls():
        result = record_method(plan, GridEngine(grid, node_wait(grid, context, plan.agents)))
    if result.status != "FINISHED":  # recorded in MLflow; Flower marks the run failed too
        raise RuntimeError(f"{plan.method.name}: {result.error}")
