"""Progress as lines (a log file, a pipe): each says when its test accuracy was measured,
since between evaluations it repeats the last one."""

from __future__ import annotations

import io

from rich.console import Console

from decentral_bench.cli.console import LineProgress


def test_a_progress_line_says_which_round_its_accuracy_is_from() -> None:
    output = io.StringIO()
    progress = LineProgress(Console(file=output, width=200))
    progress.method_started("CDSGD seed=0", 20)
    for server_round in range(1, 21):
        evaluated = server_round % 5 == 0
        metrics = {"test_accuracy_mean": server_round / 25} if evaluated else {}
        progress.round_finished("CDSGD seed=0", server_round, {"loss": 1.0, **metrics})
    lines = [line.rsplit(" (", 1)[0] for line in output.getvalue().splitlines()]
    assert lines == ["CDSGD seed=0: started, 20 rounds",
                     "CDSGD seed=0: round 2/20", "CDSGD seed=0: round 4/20",
                     "CDSGD seed=0: round 6/20, test acc 0.200 at round 5",
                     "CDSGD seed=0: round 8/20, test acc 0.200 at round 5",
                     "CDSGD seed=0: round 10/20, test acc 0.400 at round 10",
                     "CDSGD seed=0: round 12/20, test acc 0.400 at round 10",
                     "CDSGD seed=0: round 14/20, test acc 0.400 at round 10",
                     "CDSGD seed=0: round 16/20, test acc 0.600 at round 15",
                     "CDSGD seed=0: round 18/20, test acc 0.600 at round 15"]
