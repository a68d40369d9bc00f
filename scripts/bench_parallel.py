#!/usr/bin/env python3
"""Time a sweep of four vectorized child runs with `run --jobs 2` against `--jobs 1`.

    scripts/bench_parallel.py [--agents 16] [--rounds 300] [--train-samples 6000]
                              [--repeats 2] [--output build/bench_parallel]

The sweep is four step sizes of CDSGD on Fashion-MNIST (an MLP with 64 hidden units,
`--agents` agents on a ring, a stratified subset of `--train-samples` images). Each
setting runs as the command line runs it, into a fresh store, alternating `--jobs 1`
and `--jobs 2` `--repeats` times so that both meet the same load. For each run it
records the wall time, the peak memory of the whole process tree (the sweep, its
fork server and children, sampled every 0.2 s; proportional set sizes, so that pages
they share are counted once) and the machine's load average before and after.
Writes `OUTPUT.json`, `OUTPUT.png` (the figure of docs/parallel.md) and prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from matplotlib import pyplot

SCENARIO = """\
name: bench-parallel
dataset: {{name: fashion_mnist, partition: iid, train_samples: {samples}}}
model: {{name: mlp, hidden: [64]}}
topology: {{kind: ring, agents: {agents}}}
training: {{rounds: {rounds}, batch_size: 32, eval_every: {every}, eval_samples: 500}}
methods: [{{name: CDSGD, algorithm: cdsgd}}]
sweep: {{training.lr: [0.02, 0.05, 0.1, 0.2]}}
tracking: {{experiment: bench-parallel}}
resources: {{engine: vectorized}}
"""


def _proportional_bytes(process: Path) -> int:
    """A process's proportional set size: its resident pages, each page it shares with
    other processes (a fork server's children share its libraries) counted in equal
    parts; its resident size where the kernel gives no PSS."""
    for name, key in (("smaps_rollup", "Pss:"), ("status", "VmRSS:")):
        try:
            text = (process / name).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def tree_memory_bytes(root: int) -> int:
    """Memory of process `root` and all its descendants: the sum of their proportional
    set sizes, so that pages they share are counted once."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat[1])
    tree, grew = {root}, True
    while grew:
        grown = tree | {pid for pid, parent in parents.items() if parent in tree}
        grew, tree = len(grown) > len(tree), grown
    return sum(_proportional_bytes(Path(f"/proc/{pid}")) for pid in tree)


def one_sweep(scenario: Path, jobs: int, folder: Path) -> dict[str, float]:
    """Run the sweep with `--jobs jobs` into a fresh store; its wall time, peak memory and
    the load around it."""
    store = f"sqlite:///{folder / f'jobs{jobs}-{time.time_ns()}.db'}"
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "decentral_bench", "run", str(scenario),
                                "--jobs", str(jobs), "--tracking-uri", store],
                               cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    peak = 0
    while process.poll() is None:
        peak = max(peak, tree_memory_bytes(process.pid))
        time.sleep(0.2)
    wall = time.perf_counter() - started
    output = process.stdout.read() if process.stdout else ""
    if process.returncode != 0:
        raise SystemExit(f"--jobs {jobs} failed:\n{output}")
    return {"jobs": jobs, "wall_s": wall, "peak_memory_mb": peak / 2**20,
            "load_before": load_before, "load_after": os.getloadavg()[0]}


def figure(results: list[dict[str, float]], path: Path) -> None:
    """Wall time and peak memory of each setting (every repeat as a dot, the mean a bar)."""
    fig, (time_axis, memory_axis) = pyplot.subplots(1, 2, figsize=(8, 3.2))
    for axis, key, label in ((time_axis, "wall_s", "wall time (s)"),
                             (memory_axis, "peak_memory_mb", "peak memory (MB)")):
        for position, jobs in enumerate((1, 2)):
            values = [result[key] for result in results if result["jobs"] == jobs]
            axis.bar(position, statistics.mean(values), color=("#8899aa", "#2a7ab0")[position])
            axis.plot([position] * len(values), values, "ko", markersize=4)
        axis.set_xticks([0, 1], ["--jobs 1", "--jobs 2"])
        axis.set_ylabel(label)
    fig.suptitle("four vectorized child runs on a 2-core machine")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--train-samples", type=int, default=6000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path("build/bench_parallel"))
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-parallel-") as temporary:
        folder = Path(temporary)
        scenario = folder / "bench-parallel.yaml"
        text = SCENARIO.format(samples=arguments.train_samples, agents=arguments.agents,
                               rounds=arguments.rounds, every=max(arguments.rounds // 2, 1))
        scenario.write_text(text)
        results = []
        for repeat in range(arguments.repeats):
            for jobs in (1, 2):
                result = one_sweep(scenario, jobs, folder)
                print(f"repeat {repeat + 1}, --jobs {jobs}: {result['wall_s']:.1f} s, "
                      f"{result['peak_memory_mb']:.0f} MB, load {result['load_before']:.1f} "
                      f"→ {result['load_after']:.1f}", flush=True)
                results.append(result)
    means = {jobs: {key: statistics.mean(r[key] for r in results if r["jobs"] == jobs)
                    for key in ("wall_s", "peak_memory_mb")} for jobs in (1, 2)}
    ratio = means[1]["wall_s"] / means[2]["wall_s"]
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.with_suffix(".json").write_text(json.dumps({
        "scenario": text,
        "cpus": len(os.sched_getaffinity(0)), "python": platform.python_version(),
        "results": results, "wall_time_ratio": ratio}, indent=2))
    figure(results, arguments.output.with_suffix(".png"))
    print("\n| setting | wall time (s) | peak memory (MB) |\n|---|---|---|")
    for jobs in (1, 2):
        print(f"| --jobs {jobs} | {means[jobs]['wall_s']:.1f} | "
              f"{means[jobs]['peak_memory_mb']:.0f} |")
    print(f"\nwall-time ratio (--jobs 1 / --jobs 2): {ratio:.2f}×")


if __name__ == "__main__":
    main()
