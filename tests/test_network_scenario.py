"""The `network:` section: its unit grammar, and bad input refused by `validate` (exit 2)
with the file, the key path (or the links file's line) and the fix, before anything
starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from decentral_bench.cli import entry as cli
from decentral_bench.scenario import ScenarioError, parse
from decentral_bench.scenario.network import read_links

BASE = {"name": "x", "methods": [{"name": "a", "algorithm": "cdsgd"}]}


def network(**keys: object) -> dict:
    return parse({**BASE, "network": keys}).network.model_dump()  # type: ignore[union-attr]


@pytest.mark.parametrize(("written", "seconds"), [
    (0.02, 0.02), (1, 1.0), ("20 ms", 0.02), ("20ms", 0.02), ("1.5 s", 1.5), ("250 us", 2.5e-4),
    ("250 µs", 2.5e-4), ("2 min", 120.0), ("1e3 ns", 1e-6), ("0 s", 0.0), (".5 h", 1800.0)])
def test_durations(written: object, seconds: float) -> None:
    assert network(latency=written)["latency"]["seconds"] == pytest.approx(seconds)


@pytest.mark.parametrize(("written", "rate"), [
    (1e6, 1e6), ("100 Mbit/s", 12.5e6), ("100 Mbps", 12.5e6), ("100 Mb/s", 12.5e6),
    ("1 Gbit/s", 125e6), ("1Gbps", 125e6), ("10 MB/s", 1e7), ("1 MiB/s", 2.0 ** 20),
    ("8 bit/s", 1.0), ("2 kB/s", 2000.0), ("2 KB/s", 2000.0), ("3 GiB/s", 3 * 2.0 ** 30)])
def test_bandwidths_in_bytes_per_second(written: object, rate: float) -> None:
    assert network(agent_uplink=written)["agent_uplink"] == pytest.approx(rate)


def test_a_latency_law_and_a_compute_speed() -> None:
    read = network(latency={"kind": "lognormal", "median": "20 ms", "sigma": 0.5},
                   compute={"samples_per_second": 2000, "stragglers": {
                       "fraction": 0.1, "slowdown": 5, "resample": True}, "jitter": 0.1})
    assert read["latency"] == {"kind": "lognormal", "seconds": 0.0, "median": 0.02,
                               "sigma": 0.5, "low": None, "high": None}
    assert read["compute"]["stragglers"] == {"fraction": 0.1, "slowdown": 5.0,
                                             "resample": True}
    assert parse(BASE).network is None  # no section, no clock


@pytest.mark.parametrize(("keys", "where", "words"), [
    ({"compute": {"step_seconds": 1, "samples_per_second": 10}}, "network.compute",
     "give step_seconds or samples_per_second, not both"),
    ({"latency": {"kind": "lognormal", "median": "2 ms"}}, "network.latency",
     "kind 'lognormal' needs sigma"),
    ({"latency": {"kind": "uniform", "low": "3 ms", "high": "2 ms"}}, "network.latency",
     "high (0.002 s) must be at least low (0.003 s)"),
    ({"latency": {"kind": "constant", "sigma": 1}}, "network.latency",
     "'sigma' applies to kind 'lognormal' only"),
    ({"agent_uplink": True}, "network.agent_uplink", "valid number"),
    ({"server_uplink": "1e999 Gbit/s"}, "network.server_uplink", "is not a finite bandwidth"),
    ({"compute": {"step_seconds": "1 ms", "stragglers": {"fraction": 0.5, "slowdown": 0.5}}},
     "network.compute.stragglers.slowdown", "greater than or equal to 1"),
])
def test_what_the_loader_refuses(keys: dict, where: str, words: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse({**BASE, "network": keys})
    [(key, message)] = caught.value.problems
    assert key == where and words in message, caught.value.problems


def test_links_files_are_read_line_by_line(tmp_path: Path) -> None:
    path = tmp_path / "links.txt"
    path.write_text("# j l latency bandwidth\n\n0 1 5ms 1Gbit/s\n1 2 - 1e6  # slow link\n")
    links = read_links(path)
    assert [(link.first, link.second, link.latency, link.bandwidth, link.line)
            for link in links] == [(0, 1, 0.005, 125e6, 3), (1, 2, None, 1e6, 4)]
    for text, words in [("0 1 5ms\n", "line 1: expected 'j l latency bandwidth'"),
                        ("0 1 5ms 1Gbit/s\n1 0 - -\n", "line 2: the link 0–1 was given on "
                                                       "line 1 already"),
                        ("3 3 - -\n", "line 1: a link joins two different agents"),
                        ("0 1 5 ms 1Gbit/s\n", "line 1: expected"),
                        ("0 1 -5ms -\n", "line 1: '-5ms' is not a duration"),
                        ("0 1 - 0Mbit/s\n", "line 1: a bandwidth must be above zero")]:
        path.write_text(text)
        with pytest.raises(ValueError, match="links.txt " + words.replace("(", r"\(")):
            read_links(path)


SCENARIO = """\
name: checked
model: {name: mlp, hidden: [8]}
topology: {kind: ring, agents: 5}
training: {rounds: 2, batch_size: 16}
methods: [{name: CDSGD, algorithm: cdsgd}]
network:
"""

BAD_INPUT = {
    "negative_bandwidth": ("  agent_uplink: -100\n", "network.agent_uplink",
                           "a bandwidth must be above zero, not -100; e.g. '100 Mbit/s'"),
    "zero_bandwidth": ("  server_downlink: 0 Gbit/s\n", "network.server_downlink",
                       "a bandwidth must be above zero, not '0 Gbit/s'"),
    "negative_latency": ("  latency: -20 ms\n", "network.latency.seconds",
                         "'-20 ms' is not a duration: write a number of seconds or a number "
                         "with one of the units ns, us, µs, ms, s, min, h, e.g. '20 ms' (it "
                         "cannot be negative)"),
    "straggler_fraction": ("  compute: {step_seconds: 1, stragglers: {fraction: 1.2, "
                           "slowdown: 5}}\n", "network.compute.stragglers.fraction",
                           "Input should be less than or equal to 1 (got 1.2)"),
    "unit": ("  agent_downlink: 100 Mbyte/s\n", "network.agent_downlink",
             "'100 Mbyte/s' is not a bandwidth: write a number of bytes per second or a "
             "number with one of the units B/s, kB/s, MB/s"),
    "link_not_an_edge": ("  links_file: links.txt\n", "network.links_file",
                         "links.txt line 2: 0–2 is not an edge of the ring graph of 5 agents; "
                         "list only its edges (lines 'j l latency bandwidth') or remove the "
                         "line"),
}


def test_validate_refuses_bad_network_input_naming_file_key_and_fix(tmp_path: Path) -> None:
    (tmp_path / "links.txt").write_text("0 1 5ms -\n0 2 5ms -\n")
    files = {}
    for name, (lines, _, _) in BAD_INPUT.items():
        files[name] = tmp_path / f"{name}.yaml"
        files[name].write_text(SCENARIO + lines)
    done = CliRunner().invoke(cli.cli, ["validate", *map(str, files.values())])
    assert done.exit_code == 2
    assert "ok:" not in done.stdout
    errors = " ".join(done.stderr.split())
    for name, (_, key, words) in BAD_INPUT.items():
        assert f"error: {files[name]}: {key}: {words}" in errors, name
