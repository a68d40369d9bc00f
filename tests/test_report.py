"""The comparison report and its figures: epochs beside rounds, readable styles, failure
marks where each method's round falls, integer ticks, snapped eigenvalues."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from matplotlib import pyplot

from decentral_bench.network.topology import build_topology
from decentral_bench.report.plots import (
    FailureMarker,
    failure_markers,
    graph_figure,
    label_histogram_figure,
    metric_figure,
    spread_figure,
    styles,
)
from decentral_bench.report.scaling import points, scaling_figure, scaling_table
from decentral_bench.report.summary import (
    COLUMNS,
    Group,
    RunRecord,
    group_records,
    report_rows,
    summaries,
    summarize,
)
from decentral_bench.scenario import FailuresConfig, TopologyConfig


def _record(label: str, algorithm: str, epochs_per_round: float, seed: int = 0,
            accuracy: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95)) -> RunRecord:
    """A finished run evaluated at rounds 1..4 with the given test accuracies."""
    rounds = range(1, len(accuracy) + 1)
    return RunRecord(run_id=f"{label}-{seed}", config_hash=f"{label}-{seed}", label=label,
                     method=label, seed=seed, status="FINISHED", algorithm=algorithm,
                     curves={"test_accuracy_mean": list(zip(rounds, accuracy, strict=True)),
                             "epochs": [(k, k * epochs_per_round) for k in rounds]})


def test_targets_are_reported_in_rounds_and_in_epochs() -> None:
    fedavg = summarize(Group("FedAvg", [_record("FedAvg", "fedavg", 1.0)]), 0.85)
    cdsgd = summarize(Group("CDSGD", [_record("CDSGD", "cdsgd", 0.1),
                                      _record("CDSGD", "cdsgd", 0.1, seed=1)]), 0.85)
    assert (fedavg.rounds_to_target, fedavg.epochs_to_target) == (3, 3.0)
    assert (cdsgd.rounds_to_target, cdsgd.epochs_to_target) == (3, pytest.approx(0.3))
    row = dict(zip(("method", "seeds", "status", "budget", "final", "best", "rounds", "epochs"),
                   cdsgd.row(0.85)[:8], strict=True))
    assert row == {"method": "CDSGD", "seeds": "2", "status": "FINISHED", "budget": "0.40",
                   "final": "0.9500 ± 0.0000", "best": "0.9500", "rounds": "3", "epochs": "0.30"}
    assert fedavg.row(0.85)[3] == "4.00"  # the epochs each trained, beside its figures
    missed = summarize(Group("CDSGD", [_record("CDSGD", "cdsgd", 0.1)]), 0.99)
    assert missed.row(0.99)[6:8] == ("not reached", "not reached")
    assert "rounds_to_target" not in missed.figures()
    assert summarize(Group("CDSGD", [_record("CDSGD", "cdsgd", 0.1)]), None).row(None)[6:8] \
        == ("–", "–")


@pytest.mark.parametrize("count", [2, 12])
def test_the_legend_sits_below_the_axes_never_over_the_curves(count: int) -> None:
    """Drawn, the legend's box lies below everything of the axes (curves, ticks and the x
    label), for two methods and for a twelve-line sweep, in both comparison figures."""
    records = [_record(f"CDSGD topology.kind=ring partition.kind=dirichlet alpha={index}",
                       "cdsgd", 0.1 * (index + 1)) for index in range(count)]
    for record in records:
        record.curves["test_accuracy_std"] = [(k, 0.1 / k) for k in range(1, 5)]
    groups = [Group(record.label, [record]) for record in records]
    for figure in (metric_figure(groups, "test_accuracy_mean"), spread_figure(groups)):
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        [legend] = figure.legends
        below = legend.get_window_extent(renderer)
        axes = figure.axes[0].get_tightbbox(renderer)
        assert below.y1 <= axes.y0, (below, axes)
        assert below.y0 >= 0 and below.x0 >= 0 and below.x1 <= figure.bbox.width  # all shown
        assert len(legend.get_texts()) == count
        pyplot.close(figure)


def test_curves_are_drawn_against_epochs_by_default_and_rounds_on_request() -> None:
    groups = [Group("FedAvg", [_record("FedAvg", "fedavg", 1.0)]),
              Group("CDSGD", [_record("CDSGD", "cdsgd", 0.1)])]
    figure = metric_figure(groups, "test_accuracy_mean")
    axes = figure.axes[0]
    lines = {line.get_label(): line for line in axes.get_lines()}
    assert list(lines["FedAvg"].get_xdata()) == [1.0, 2.0, 3.0, 4.0]
    assert list(lines["CDSGD"].get_xdata()) == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert axes.get_xlabel().startswith("epochs") and axes.get_ylabel() == "test accuracy"
    [legend] = figure.legends
    assert [text.get_text() for text in legend.get_texts()] == ["FedAvg", "CDSGD"]
    assert lines["FedAvg"].get_linestyle() != lines["CDSGD"].get_linestyle()
    assert lines["FedAvg"].get_color() != lines["CDSGD"].get_color()
    assert tuple(figure.get_size_inches() * figure.dpi) == (1200, 720)
    pyplot.close(figure)
    by_round = metric_figure(groups, "test_accuracy_mean", x_axis="rounds")
    assert list(by_round.axes[0].get_lines()[1].get_xdata()) == [1, 2, 3, 4]
    assert by_round.axes[0].get_xlabel() == "round"
    pyplot.close(by_round)


def test_runs_without_an_epochs_metric_are_drawn_against_rounds() -> None:
    old = _record("CDSGD", "cdsgd", 0.1)
    del old.curves["epochs"]
    figure = metric_figure([Group("CDSGD", [old])], "test_accuracy_mean")
    assert figure.axes[0].get_xlabel() == "round"
    pyplot.close(figure)


def test_forty_groups_get_forty_distinct_styles() -> None:
    drawn = styles(40)
    assert len({(style.colour, style.line_style) for style in drawn}) == 40
    assert all(a.colour != b.colour and a.line_style != b.line_style
               for a, b in itertools.pairwise(drawn))


def test_failures_are_marked_where_each_hit_method_reaches_that_round() -> None:
    failures = FailuresConfig.model_validate(
        {"server": {"round": 2, "mode": "local"}, "agents": [{"agent": 1, "round": 3}]})
    markers = failure_markers(failures)
    assert markers[0] == FailureMarker(2.5, "server lost (local)", frozenset({
        "fedavg", "fedprox", "fedavgm", "fedadam", "fedyogi", "fedadagrad", "fedmedian",
        "fedtrimmedavg", "krum", "multikrum", "bulyan"}))
    assert "centralized_sgd" not in markers[1].algorithms and "cdsgd" in markers[1].algorithms
    groups = [Group("FedAvg", [_record("FedAvg", "fedavg", 1.0)]),
              Group("CDSGD", [_record("CDSGD", "cdsgd", 0.1)]),
              Group("SGD", [_record("SGD", "centralized_sgd", 0.02)])]
    figure = metric_figure(groups, "test_accuracy_mean", markers)
    axes = figure.axes[0]
    marks = {text.get_text(): text.xy[0] for text in axes.texts}
    assert marks == {"server lost (local): FedAvg": 2.5, "agent 1 down: FedAvg": 2.5,
                     "agent 1 down: CDSGD": pytest.approx(0.25)}
    pyplot.close(figure)
    by_round = metric_figure(groups, "test_accuracy_mean", markers, x_axis="rounds")
    assert {text.get_text(): text.xy[0] for text in by_round.axes[0].texts} == {
        "server lost (local)": 2.5, "agent 1 down": 2.5}
    pyplot.close(by_round)


def test_a_single_agent_histogram_has_one_integer_tick() -> None:
    figure = label_histogram_figure(np.array([[10, 20, 30]]))
    assert list(figure.axes[0].get_xticks()) == [0]
    pyplot.close(figure)


def test_the_complete_graph_is_titled_with_a_snapped_lambda2() -> None:
    topology = build_topology(TopologyConfig(kind="complete", agents=5))
    assert topology.lambda2 == 0.0 and not math.copysign(1.0, topology.lambda2) < 0
    figure = graph_figure(topology)
    assert figure.axes[0].get_title() == "5 agents, 10 edges, λ2 = 0, λN = 0"
    pyplot.close(figure)


def _gossip(label: str, seed: int, total_bytes: float, xi: tuple[float, ...],
            controlled: bool, swept: str = "") -> RunRecord:
    """A cdmsgd run of 4 rounds in phases 1, 1, 2, 3 with the Ξ² it held each round."""
    curves = {"phase": [(1, 1.0), (2, 1.0), (3, 2.0), (4, 3.0)],
              "bytes_moved_total": [(4, total_bytes)],
              "consensus_distance": [(k + 1, 10.0) for k in range(4)]}
    if controlled:
        curves["consensus_distance_controlled"] = [(k + 1, v) for k, v in enumerate(xi)]
    return RunRecord(run_id=f"{label}{swept}-{seed}", config_hash=f"{label}{swept}-{seed}",
                     label=label + swept, method=label, seed=seed, status="FINISHED",
                     algorithm="cdmsgd", curves=curves)


def test_controlled_methods_get_extra_traffic_and_mean_xi_by_phase() -> None:
    records = [_gossip("plain", seed, 100.0, (), False) for seed in (0, 1)]
    records += [_gossip("plain", 0, 400.0, (), False, swept=" lr=0.2"),
                _gossip("control", 0, 150.0, (1.0, 3.0, 0.5, 0.25), True),
                _gossip("control", 1, 250.0, (3.0, 5.0, 1.5, 0.75), True),
                _gossip("control", 0, 500.0, (1.0, 1.0, 1.0, 1.0), True, swept=" lr=0.2")]
    found = {group.label: group for group in summaries(records)}
    control = found["control"]
    assert control.baseline == "plain"
    assert control.extra_traffic_percent == pytest.approx(100.0)  # +50 % and +150 %
    assert control.consensus_by_phase == {1: 3.0, 2: 1.0, 3: 0.5}
    assert control.figures()["extra_traffic_percent"] == pytest.approx(100.0)
    assert control.figures()["consensus_distance_phase_2"] == 1.0
    # The same swept values pair up; the baseline shows its own Ξ² for reference.
    assert found["control lr=0.2"].baseline == "plain lr=0.2"
    assert found["control lr=0.2"].extra_traffic_percent == pytest.approx(25.0)
    assert found["plain"].consensus_by_phase == {1: 10.0, 2: 10.0, 3: 10.0}
    rows, controlled = report_rows(records)
    assert len(rows) == 4
    assert ("control", "plain", "100.0", "3 / 1 / 0.5") in controlled
    assert report_rows([_gossip("plain", 0, 100.0, (), False)])[1] == []


def _timed(label: str, algorithm: str, seconds_per_round: float, seed: int = 0) -> RunRecord:
    """A finished run whose rounds took `seconds_per_round` simulated seconds each."""
    record = _record(label, algorithm, 0.5, seed)
    record.curves["sim_time_s"] = [(k, k * seconds_per_round) for k in range(1, 5)]
    return record


SECONDS = COLUMNS.index("sim s to target")
TO_TARGET = slice(COLUMNS.index("rounds to target"), SECONDS + 1)


def test_time_to_target_in_simulated_seconds() -> None:
    """FedAvg's rounds take 2 s here, CDSGD's 0.25 s (mean of 0.2 and 0.3 over seeds):
    the target 0.85 is reached at round 3 by both, at 6 s and at 0.75 s."""
    fedavg = summarize(Group("FedAvg", [_timed("FedAvg", "fedavg", 2.0)]), 0.85)
    cdsgd = summarize(Group("CDSGD", [_timed("CDSGD", "cdsgd", 0.2),
                                      _timed("CDSGD", "cdsgd", 0.3, seed=1)]), 0.85)
    assert fedavg.time_to_target_s == 6.0 and fedavg.row(0.85)[SECONDS] == "6"
    assert cdsgd.time_to_target_s == pytest.approx(0.75) and cdsgd.row(0.85)[SECONDS] == "0.75"
    assert cdsgd.sim_time_s == pytest.approx(1.0)
    assert cdsgd.figures()["time_to_target_s"] == pytest.approx(0.75)
    missed = summarize(Group("CDSGD", [_timed("CDSGD", "cdsgd", 0.2)]), 0.99)
    assert missed.row(0.99)[TO_TARGET] == ("not reached",) * 3
    untimed = summarize(Group("CDSGD", [_record("CDSGD", "cdsgd", 0.1)]), 0.85)
    assert untimed.row(0.85)[TO_TARGET] == ("3", "0.30", "–")  # no network: no seconds
    assert "time_to_target_s" not in untimed.figures()


def test_curves_against_simulated_seconds() -> None:
    groups = [Group("FedAvg", [_timed("FedAvg", "fedavg", 2.0)]),
              Group("CDSGD", [_timed("CDSGD", "cdsgd", 0.25)])]
    markers = [FailureMarker(2.5, "agent 1 down", frozenset({"cdsgd", "fedavg"}))]
    figure = metric_figure(groups, "test_accuracy_mean", markers, x_axis="time")
    axes = figure.axes[0]
    lines = {line.get_label(): line for line in axes.get_lines()}
    assert list(lines["FedAvg"].get_xdata()) == [2.0, 4.0, 6.0, 8.0]
    assert list(lines["CDSGD"].get_xdata()) == [0.25, 0.5, 0.75, 1.0]
    assert axes.get_xlabel() == "simulated time (s)"
    # The crash after round 2.5 falls at 5 s for FedAvg and 0.625 s for CDSGD.
    assert sorted(line.get_xdata()[0] for line in axes.get_lines()
                  if line.get_label().startswith("_")) == [0.625, 5.0]
    pyplot.close(figure)
    untimed = [Group("CDSGD", [_record("CDSGD", "cdsgd", 0.1)]), *groups]
    fallback = metric_figure(untimed, "test_accuracy_mean", x_axis="time")
    assert fallback.axes[0].get_xlabel().startswith("epochs")  # a run has no clock
    pyplot.close(fallback)


def test_time_to_target_against_the_agents_names_who_is_first() -> None:
    """Two sizes: FedAvg (2 s a round) is first on 16 agents; on 256 its rounds take
    8 s and CDSGD (0.5 s a round, target at round 3) is first."""
    def run(method: str, agents: int, seconds: float, seed: int) -> RunRecord:
        record = _timed(method, method.lower(), seconds, seed)
        record.label = f"{method} kind=ring agents={agents}"
        record.swept = {"topology.kind": "ring", "topology.agents": str(agents)}
        return record

    records = [run("FedAvg", 16, 0.1, 0), run("FedAvg", 16, 0.1, 1), run("CDSGD", 16, 0.5, 0),
               run("FedAvg", 256, 8.0, 0), run("CDSGD", 256, 0.5, 0)]
    records[4].curves["test_accuracy_mean"] = [(1, 0.5), (2, 0.6), (3, 0.6), (4, 0.6)]
    found = points(group_records(records), summaries(records, 0.85))
    assert [(p.method, p.setting, p.agents) for p in found] == [
        ("FedAvg", "kind=ring", 16), ("CDSGD", "kind=ring", 16), ("FedAvg", "kind=ring", 256),
        ("CDSGD", "kind=ring", 256)]
    assert scaling_table(found).splitlines()[2:] == [
        "| kind=ring | 16 | 0.3 | 1.5 | FedAvg |",
        "| kind=ring | 256 | 24 | not reached | FedAvg |"]
    records[4].curves["test_accuracy_mean"] = [(1, 0.5), (2, 0.6), (3, 0.9), (4, 0.9)]
    found = points(group_records(records), summaries(records, 0.85))
    assert scaling_table(found).splitlines()[3] == "| kind=ring | 256 | 24 | 1.5 | CDSGD |"
    figure = scaling_figure(found, 0.85)
    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    assert list(lines["CDSGD"].get_xdata()) == [16, 256]
    assert list(lines["FedAvg"].get_ydata()) == [pytest.approx(0.3), 24.0]
    pyplot.close(figure)


def test_a_run_shared_across_graphs_joins_every_graphs_series() -> None:
    """FedAvg reads no `topology.kind`: it ran once per N, and its point stands in the ring's
    and the torus's series alike, so each setting compares it with the gossip method."""
    def run(method: str, kind: str | None, seconds: float) -> RunRecord:
        record = _timed(method, method.lower(), seconds, 0)
        record.swept = {"topology.agents": "16"} | ({"topology.kind": kind} if kind else {})
        record.shared = () if kind else ("topology.kind",)
        record.label = f"{method} {kind or ''}".strip()
        return record

    records = [run("FedAvg", None, 0.1), run("CDSGD", "ring", 0.5), run("CDSGD", "torus", 1.0)]
    found = points(group_records(records), summaries(records, 0.85))
    assert sorted((p.method, p.setting) for p in found) == [
        ("CDSGD", "kind=ring"), ("CDSGD", "kind=torus"),
        ("FedAvg", "kind=ring"), ("FedAvg", "kind=torus")]
    assert scaling_table(found).splitlines()[2:] == [
        "| kind=ring | 16 | 0.3 | 1.5 | FedAvg |", "| kind=torus | 16 | 0.3 | 3 | FedAvg |"]
