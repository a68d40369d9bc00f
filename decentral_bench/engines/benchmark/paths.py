"""The timed paths of one workload, each computing the same CDSGD rounds:

- `flower`: the Flower engine (Ray actors, one ClientApp call per agent per round);
- `plain`: the matrix-form reference, one PyTorch call per agent per step;
- `vectorized`: the vectorized engine;
- `deterministic`: the vectorized engine under `training.deterministic`;
- `funcloop`: the minimal program: a hand-written `torch.func` loop of the same maths,
  nothing else (stacked parameters, one `vmap`'d gradient, Π by `Mixer`; no reports, no
  failure schedule, no metrics, no blocks).

Each returns its figures and every agent's final point, and calls `between` after each
round, outside the round's timing (interleaved paths take turns there).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import numpy as np
import torch
from torch.func import functional_call, grad, vmap
from torch.nn import functional

from decentral_bench.engines.base import FinalParameters, RoundReport
from decentral_bench.engines.flower.simulation import simulate
from decentral_bench.engines.reference import reference_gossip
from decentral_bench.engines.vectorized import VectorizedEngine
from decentral_bench.engines.vectorized.memory import keep_freed_memory
from decentral_bench.engines.vectorized.mixing import Mixer
from decentral_bench.experiment.data import batch_slot, epoch_order
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.experiment.training import available_cpus, select_device

Between = Callable[[], None]  # called after each round, outside its timing


class Pauses:
    """The call between rounds (where interleaved paths take turns), and the seconds
    spent in it, which are not the path's."""

    def __init__(self, between: Between) -> None:
        self.between = between
        self.seconds = 0.0

    def __call__(self) -> None:
        started = time.perf_counter()
        self.between()
        self.seconds += time.perf_counter() - started


@dataclass
class PathFigures:
    """What one path did on one workload."""

    wall_s: float
    startup_s: float
    round_s: float          # median time per round, without the first (warm-up) and the last
    samples_per_s: float
    peak_memory_mb: float   # peak resident memory it added (host), or peak GPU memory
    round_times: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the path decided (the engine's)
    limit_s: float = 0.0    # the least time of a round at the machine's rates (`machine`)
    bandwidth_gb_s: float = 0.0  # the rates measured just before the path ran
    gflop_s: float = 0.0


class PeakMemory:
    """Peak resident memory of this process above its level at the start (the kernel's
    high-water mark, reset at the start: /proc/self/clear_refs); on a GPU, peak
    allocation. Each path runs in a process of its own (`processes.py`), so the figure is
    the path's alone."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.base_kb = 0
        self.peak_kb = 0

    @staticmethod
    def _status_kb(field_name: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field_name}:"):
                return int(line.split()[1])
        return 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        Path("/proc/self/clear_refs").write_text("5")  # the high-water mark starts here
        self.base_kb = self._status_kb("VmRSS")
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.peak_kb = self._status_kb("VmHWM") - self.base_kb

    @property
    def megabytes(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return self.peak_kb / 1024


def actors_peak_rss_mb() -> float:
    """Peak resident memory of the live Flower actor processes, summed (Linux /proc)."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        if "ray::ClientAppA" in text.split("\n", 1)[0]:
            for line in text.splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return total / 1024


def figures(wall: float, startup: float, round_times: list[float], samples_per_round: int,
            peak_memory_mb: float, notes: list[str] | None = None) -> PathFigures:
    # Steady state: not the first round (warm-up), not the last (the engines evaluate every
    # agent after the last round; the loops do not).
    steady = round_times[1:-1] or round_times
    round_s = float(np.median(steady))
    return PathFigures(wall_s=wall, startup_s=startup, round_s=round_s,
                       samples_per_s=samples_per_round / round_s, peak_memory_mb=peak_memory_mb,
                       round_times=[round(t, 5) for t in round_times], notes=notes or [])


def _samples(plan: MethodPlan) -> int:
    return plan.agents * plan.local_steps * plan.batch_size


def run_plain(plan: MethodPlan, between: Between) -> tuple[PathFigures, FinalParameters]:
    """The matrix-form reference loop, timed round by round."""
    round_times: list[float] = []
    pauses = Pauses(between)

    def on_round(seconds: float) -> None:
        round_times.append(seconds)
        pauses()

    with PeakMemory(torch.device("cpu")) as memory:
        started = time.perf_counter()
        final = reference_gossip(plan, on_round=on_round)
        wall = time.perf_counter() - started - pauses.seconds
    return figures(wall, wall - sum(round_times), round_times, _samples(plan),
                   memory.megabytes), final


def _run_engine(plan: MethodPlan, engine: str,
                between: Between) -> tuple[PathFigures, FinalParameters]:
    """An engine, timed by its own round clock (measurement excluded)."""
    round_times: list[float] = []
    first_round_end: list[float] = []
    actor_rss: list[float] = []
    notes: list[str] = []
    pauses = Pauses(between)

    def sink(report: RoundReport) -> None:
        round_times.append(report.wall_time_s)
        if report.server_round == 1:
            first_round_end.append(time.perf_counter())
        if report.server_round == plan.rounds and engine == "flower":
            actor_rss.append(actors_peak_rss_mb())
        pauses()

    device = select_device(plan.scenario.resources.device) if engine == "vectorized" \
        else torch.device("cpu")
    with PeakMemory(device) as memory:
        started = time.perf_counter()
        if engine == "flower":
            final = simulate(plan, sink)
        else:
            final = VectorizedEngine().run(plan, sink, lambda _, text: notes.append(text))
        wall = time.perf_counter() - started - pauses.seconds
    startup = first_round_end[0] - round_times[0] - started
    return figures(wall, startup, round_times, _samples(plan),
                   memory.megabytes + (actor_rss[0] if actor_rss else 0.0), notes), final


def run_flower(plan: MethodPlan, between: Between) -> tuple[PathFigures, FinalParameters]:
    return _run_engine(plan, "flower", between)


def run_vectorized(plan: MethodPlan, between: Between) -> tuple[PathFigures, FinalParameters]:
    return _run_engine(plan, "vectorized", between)


def run_deterministic(plan: MethodPlan, between: Between,
                      ) -> tuple[PathFigures, FinalParameters]:
    """The vectorized engine under `training.deterministic: true`: what bit-identical
    reruns cost (one thread, deterministic kernels, blocks from total memory)."""
    training = plan.scenario.training.model_copy(update={"deterministic": True})
    scenario = plan.scenario.model_copy(update={"training": training})
    return _run_engine(MethodPlan(scenario=scenario, method=plan.method), "vectorized",
                       between)


def run_funcloop(plan: MethodPlan, between: Between) -> tuple[PathFigures, FinalParameters]:
    """CDSGD written directly with torch.func: X ← Π X − α ∇F(X) on the same minibatches
    (with the engine's allocator setting, `keep_freed_memory`)."""
    keep_freed_memory()
    threads = torch.get_num_threads()
    torch.set_num_threads(available_cpus())
    device = select_device(plan.scenario.resources.device)
    dataset = plan.dataset
    train_x, train_y = dataset.train_x.to(device), dataset.train_y.to(device)
    model = plan.build_model().to(device)
    names = [name for name, _ in model.named_parameters()]
    parts, size = plan.partitions, [len(part) for part in plan.partitions]
    orders: dict[int, tuple[int, np.ndarray]] = {}

    def batch(agent: int, step: int) -> np.ndarray:
        epoch, start, stop = batch_slot(size[agent], plan.batch_size, step)
        if orders.get(agent, (-1,))[0] != epoch:
            orders[agent] = (epoch, epoch_order(size[agent], plan.seed, agent, epoch))
        return parts[agent][orders[agent][1][start:stop]]

    def loss(parameters: tuple[torch.Tensor, ...], x: torch.Tensor,
             y: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, dict(zip(names, parameters, strict=True)), (x,))
        return functional.cross_entropy(logits, y)

    gradients = vmap(grad(loss))

    def stacked_gradients(x: list[torch.Tensor], batches: list[np.ndarray]
                          ) -> list[torch.Tensor]:
        """Every agent's gradient: one vmap call per minibatch size (uneven shards end
        their epochs with smaller batches)."""
        lengths = sorted({len(b) for b in batches})
        if len(lengths) == 1:
            return list(gradients(tuple(x), *samples(np.stack(batches))))
        out = [torch.empty_like(p) for p in x]
        for length in lengths:
            agents = [j for j, b in enumerate(batches) if len(b) == length]
            rows = torch.as_tensor(agents, device=device)
            part = gradients(tuple(p[rows] for p in x),
                             *samples(np.stack([batches[j] for j in agents])))
            for o, d in zip(out, part, strict=True):
                o[rows] = d
        return out

    def samples(index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        where = torch.from_numpy(index).to(device)
        features = flat_x.index_select(0, where.reshape(-1))
        return features.reshape(*index.shape, *train_x.shape[1:]), train_y[where]

    flat_x = train_x.reshape(len(train_x), -1)
    mix = Mixer(plan.topology.mixing_matrix, device)
    round_times: list[float] = []
    pauses = Pauses(between)
    try:
        with PeakMemory(device) as memory:
            started = time.perf_counter()
            x = [torch.from_numpy(a).to(device).repeat(plan.agents, *[1] * a.ndim)
                 for a in plan.initial_parameters]
            for server_round in range(1, plan.rounds + 1):
                round_started = time.perf_counter()
                lr = plan.lr_at(server_round)
                first = (server_round - 1) * plan.local_steps
                for step in range(first, first + plan.local_steps):
                    g = stacked_gradients(x, [batch(j, step) for j in range(plan.agents)])
                    mixed = mix(x) if step == first else x
                    x = [torch.sub(m, d, alpha=lr) for m, d in zip(mixed, g, strict=True)]
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                round_times.append(time.perf_counter() - round_started)
                pauses()
            wall = time.perf_counter() - started - pauses.seconds
    finally:
        torch.set_num_threads(threads)
    final = {j: [p[j].cpu().numpy() for p in x] for j in range(plan.agents)}
    return figures(wall, wall - sum(round_times), round_times, _samples(plan),
                   memory.megabytes), final


RUNNERS: dict[str, Callable[[MethodPlan, Between], tuple[PathFigures, FinalParameters]]] = {
    "flower": run_flower, "plain": run_plain, "vectorized": run_vectorized,
    "deterministic": run_deterministic, "funcloop": run_funcloop}
