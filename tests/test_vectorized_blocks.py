"""The vectorized engine's rounds block by block: a block's rows of Π's product are the whole
product's rows, the next state is written block by block without copying what a rule carries
over and into the stacks of the state before last, agent-by-agent gradients equal the
batched ones (and, with dropout, the ClientApp's own), and the batched-or-not choice
follows its rule."""

from __future__ import annotations

import ctypes
import re

import numpy as np
import pytest
import torch
from conftest import observed_run, tiny_scenario
from test_vectorized import assert_same_metrics, assert_same_parameters

from decentral_bench.engines.flower.simulation import FlowerEngine
from decentral_bench.engines.reference import reference_gossip
from decentral_bench.engines.vectorized import VectorizedEngine
from decentral_bench.engines.vectorized.batches import AgentBatches
from decentral_bench.engines.vectorized.batching import choose_batched
from decentral_bench.engines.vectorized.blocks import NextState, state_rows
from decentral_bench.engines.vectorized.functional import StackedModel
from decentral_bench.engines.vectorized.memory import LARGEST_THRESHOLD
from decentral_bench.engines.vectorized.mixing import Mixer
from decentral_bench.engines.vectorized.stack import StackedRun, row_blocks
from decentral_bench.experiment.agent import AgentSetup
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.scenario import ScenarioError, parse

CPU = torch.device("cpu")


def _plan(**overrides: object) -> MethodPlan:
    settings: dict[str, object] = {
        "methods": [{"name": "M", "algorithm": "cdsgd"}],
        "training": {"rounds": 4, "batch_size": 16, "lr": 0.1, "seed": 3}}
    settings.update(overrides)
    return MethodPlan.of(tiny_scenario(**settings), "M")


@pytest.mark.parametrize(("agents", "dense"), [(9, False), (9, True), (5, False)])
def test_a_blocks_rows_of_the_product_are_the_whole_products(agents: int,
                                                            dense: bool) -> None:
    plan = _plan(topology={"kind": "ring", "agents": agents})
    mixer = Mixer(plan.topology.mixing_matrix, CPU, dense=dense)
    points = [torch.randn(agents, 4, 3), torch.randn(agents, 5)]
    whole = mixer(points)
    matrix = torch.as_tensor(plan.topology.mixing_matrix, dtype=torch.float32)
    for w, p in zip(whole, points, strict=True):
        torch.testing.assert_close(w, torch.einsum("jl,l...->j...", matrix, p), rtol=0,
                                   atol=1e-6)
    for block in row_blocks(agents, 4):
        size = block.stop - block.start
        buffers = [torch.full((4, *p.shape[1:]), float("nan"))[:size] for p in points]
        for rows in (mixer.rows(points, block), mixer.rows(points, block, buffers)):
            for r, w in zip(rows, whole, strict=True):
                assert torch.equal(r, w[block])
        assert all(b.data_ptr() == r.data_ptr() for b, r in
                   zip(buffers, mixer.rows(points, block, buffers), strict=True))


def test_row_blocks_cover_every_agent_once() -> None:
    assert row_blocks(7, 3) == [slice(0, 3), slice(3, 6), slice(6, 7)]
    assert row_blocks(4, 10) == [slice(0, 4)]


def test_the_next_state_takes_carried_parts_whole_and_writes_the_others() -> None:
    """Polyak's shape: x_{k+1} new, x_{k−1} ← x_k carried over unchanged."""
    old = {"x": [torch.arange(12.0).reshape(6, 2)], "previous": [torch.zeros(6, 2)]}
    spare = torch.full((6, 2), -1.0)
    following = NextState(6, [spare])
    for block in row_blocks(6, 4):
        rows = state_rows(old, block)
        following.write(block, {"x": [rows["x"][0] * 10], "previous": rows["x"]}, old, rows)
    assert following.state["previous"][0] is old["x"][0]  # the same tensor, no copy
    assert following.state["x"][0] is spare  # written into the spare stack
    assert torch.equal(spare, old["x"][0] * 10)


def test_a_part_carried_over_in_some_blocks_only_is_copied() -> None:
    old = {"x": [torch.arange(6.0)]}
    following = NextState(6)
    for block in row_blocks(6, 4):
        rows = state_rows(old, block)
        new = rows["x"][0] if block.start == 0 else rows["x"][0] + 100
        following.write(block, {"x": [new]}, old, rows)
    result = following.state["x"][0]
    assert result is not old["x"][0]
    assert torch.equal(result, torch.tensor([0.0, 1, 2, 3, 104, 105]))
    assert torch.equal(old["x"][0], torch.arange(6.0))  # the old state is left as it was


@pytest.mark.parametrize("variant", ["polyak", "nesterov", "polyak-local"])
def test_rounds_in_blocks_equal_the_matrix_form(variant: str) -> None:
    """Blocks of 2 of 5 agents, two local steps, weight decay: every block boundary, the
    carried-over parts and the recycled stacks of four rounds."""
    method: dict[str, object] = {"name": "M", "algorithm": "cdmsgd",
                                 "variant": variant.removesuffix("-local")}
    if variant.endswith("-local"):
        method["momentum_buffer"] = "local"
    plan = _plan(methods=[method], topology={"kind": "ring", "agents": 5},
                 training={"rounds": 4, "batch_size": 16, "lr": 0.1, "seed": 3,
                           "local_steps": 2, "weight_decay": 1e-3})
    final, _, _ = observed_run(plan, VectorizedEngine(chunk=2))
    assert_same_parameters(final, reference_gossip(plan))


def test_agent_by_agent_gradients_equal_the_batched_ones() -> None:
    plan = _plan(topology={"kind": "ring", "agents": 6})
    batched, batched_rounds, _ = observed_run(plan, VectorizedEngine(chunk=4, batched=True))
    one_by_one, rounds, _ = observed_run(plan, VectorizedEngine(chunk=4, batched=False))
    assert_same_parameters(one_by_one, batched)
    assert_same_parameters(one_by_one, reference_gossip(plan))
    for server_round, metrics in rounds.items():
        assert metrics["grad_norm_sq_mean"] == pytest.approx(
            batched_rounds[server_round]["grad_norm_sq_mean"], rel=1e-5)


def test_agent_by_agent_the_engine_computes_the_clientapps_gradients() -> None:
    """Bit for bit what each agent's ClientApp computes (`AgentSetup.gradient_at`), its
    dropout masks (seeded by seed, agent and step) included."""
    plan = _plan(model={"name": "cnn_paper", "dropout": 0.5}, training={
        "rounds": 2, "batch_size": 8, "lr": 0.05, "seed": 1, "weight_decay": 1e-3})
    run = StackedRun(plan, None, None, False, lambda _: None, lambda *_: None)
    points = [p + 0.01 * torch.randn_like(p) for p in run.stack(3)]
    grads, losses = run.gradient_at([0, 1, 2], [5, 5, 5], points)
    for agent in range(3):
        own, loss = AgentSetup.build(plan, agent).gradient_at([p[agent] for p in points], 5)
        assert losses[agent].item() == loss
        for stacked, gradient in zip(grads, own, strict=True):
            assert torch.equal(stacked[agent], gradient)


def _probe(plan: MethodPlan) -> tuple[StackedModel, AgentBatches, list[torch.Tensor]]:
    batches = AgentBatches(plan, CPU)
    x0 = [torch.from_numpy(array) for array in plan.initial_parameters]
    return StackedModel(plan.build_model()), batches, x0


def test_auto_batches_models_without_convolutions_without_measuring() -> None:
    model, batches, x0 = _probe(_plan())
    assert choose_batched(model, batches, x0, "auto") == (True, "")
    assert choose_batched(model, batches, x0, False) == (False, "")


def test_a_deterministic_run_picks_convolutions_agent_by_agent_without_measuring() -> None:
    model, batches, x0 = _probe(_plan(model={"name": "cnn_paper"}))
    assert choose_batched(model, batches, x0, "auto", deterministic=True) == (False, "")
    assert choose_batched(model, batches, x0, True, deterministic=True) == (True, "")


def test_auto_measures_convolutions_on_the_cpu_and_takes_the_faster() -> None:
    model, batches, x0 = _probe(_plan(model={"name": "cnn_paper"}))
    batched, note = choose_batched(model, batches, x0, "auto")
    seconds = re.search(r"took ([\d.]+) s batched, ([\d.]+) s agent by agent", note)
    assert seconds is not None, note
    assert batched == (float(seconds[1]) <= float(seconds[2]))
    assert note.startswith(f"vectorized engine: {'batched' if batched else 'agent-by-agent'}")


def test_the_run_notes_what_it_measured() -> None:
    plan = _plan(model={"name": "cnn_paper"}, training={"rounds": 1, "batch_size": 8,
                                                        "lr": 0.05, "seed": 1})
    _, _, events = observed_run(plan, VectorizedEngine())
    assert [(server_round, text.split(" (")[0]) for server_round, text in events] in (
        [(0, "vectorized engine: batched gradients")],
        [(0, "vectorized engine: agent-by-agent gradients")])


def test_batched_is_a_choice_of_three() -> None:
    data = {"name": "x", "methods": [{"name": "M", "algorithm": "cdsgd"}]}
    assert parse({**data, "resources": {"batched": False}}, "x").resources.batched is False
    assert parse(data, "x").resources.batched == "auto"
    with pytest.raises(ScenarioError, match=r"resources\.batched"):
        parse({**data, "resources": {"batched": "sometimes"}}, "x")


def test_the_allocator_thresholds_fit_a_c_int() -> None:
    """mallopt takes C ints; ctypes would silently cut a larger value (1 << 40 became 0,
    a trim threshold that hands freed memory back at every free)."""
    assert ctypes.c_int(LARGEST_THRESHOLD).value == LARGEST_THRESHOLD


GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@GPU
@pytest.mark.parametrize("batched", [True, False])
def test_on_a_gpu_the_engine_keeps_its_tensors_there_and_equals_the_matrix_form(
        batched: bool) -> None:
    plan = _plan(topology={"kind": "ring", "agents": 6},
                 methods=[{"name": "M", "algorithm": "cdmsgd"}],
                 resources={"device": "cuda"})
    devices: list[str] = []
    final = VectorizedEngine(chunk=4, batched=batched).run(
        plan, lambda report: devices.extend(p.device.type for p in report.points),
        lambda *_: None)
    assert set(devices) == {"cuda"}
    expected = reference_gossip(plan)  # the ClientApp's gradients, on the same GPU
    assert_same_parameters(final, expected)
    assert not np.allclose(final[0][0], plan.initial_parameters[0])


@pytest.mark.slow
@pytest.mark.gpu
@GPU
def test_on_a_gpu_both_engines_end_with_the_same_parameters_and_metrics() -> None:
    plan = _plan(methods=[{"name": "M", "algorithm": "cdmsgd"}], resources={"device": "cuda"})
    flower_final, flower_rounds, _ = observed_run(plan, FlowerEngine())
    final, rounds, _ = observed_run(plan, VectorizedEngine())
    assert_same_parameters(final, flower_final)
    assert_same_metrics(rounds, flower_rounds)
