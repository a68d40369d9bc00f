"""Running a scenario: checks before training, child runs recorded in MLflow, errors in words.
May import: everything but cli."""
