"""The ServerApp that `flwr run .` loads (`[tool.flwr.app.components]` in pyproject.toml).

It reads the scenario path and the method from the run config and records the
method to MLflow the way `decentral-bench run` does, on the grid Flower gives
it (a simulation's or a real deployment's SuperLink). It sits at the top of the
import graph: it uses the runner, and nothing imports it.
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from decentral_bench import scenario as scenario_file
from decentral_bench.engine import EventSink, FinalParameters, ReportSink
from decentral_bench.flower.server_app import run_method
from decentral_bench.plan import MethodPlan
from decentral_bench.runner import record_method

APP_FOLDER = Path(__file__).resolve().parents[2]  # where pyproject.toml is


class GridEngine:
    """The Flower engine on a grid that Flower hands over (`flwr run`)."""

    name = "flower"

    def __init__(self, grid: Grid) -> None:
        self.grid = grid

    def run(self, plan: MethodPlan, report: ReportSink, on_event: EventSink) -> FinalParameters:
        return run_method(self.grid, plan, report, on_event=on_event)


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Entry point of `flwr run .`: run config keys `scenario` (a path) and `method`."""
    path = Path(str(context.run_config["scenario"]))
    if not path.is_absolute() and not path.exists():  # relative to the app's own folder
        path = APP_FOLDER / path
    scenario = scenario_file.load(path)
    plan = MethodPlan.of(scenario, str(context.run_config["method"]))
    result = record_method(plan, GridEngine(grid))
    if result.status != "FINISHED":  # recorded in MLflow; Flower marks the run failed too
        raise RuntimeError(f"{plan.method.name}: {result.error}")
