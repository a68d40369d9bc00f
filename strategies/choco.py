"""CHOCO-SGD (Koloskova, Stich, Jaggi, ICML 2019, Algorithm 2), as the authors' deep-learning
code computes it (epfml/ChocoSGD, `dl_code/pcode/optim/parallel_choco.py`).

Agent i keeps its iterate x_i, the public copy x̂_i its neighbours hold of it, and the
aggregate s_i = Σ_j w_ij x̂_j of its neighbourhood's copies (the authors' "memory"). Round t:

    x_i^{t+½} = x_i^t − η g_i(x_i^t)                                  (the SGD step)
    x_i^{t+1} = x_i^{t+½} + γ (s_i^t − x̂_i^t) = x_i^{t+½} + γ Σ_j w_ij (x̂_j^t − x̂_i^t)
    q_i^t     = Q(x_i^{t+1} − x̂_i^t),      x̂_i^{t+1} = x̂_i^t + q_i^t

and agent i sends only q_i^t; every neighbour j that receives it adds w_ji q_i^t to s_j. As
a gossip rule (`strategies.gossip`, combine-then-adapt) the message is q, and the round's
mixing sum Σ_j w_ij q_j^{t−1} of last round's messages (q_i's own among them) is what
brings s_i^t = s_i^{t−1} + Σ_j w_ij q_j^{t−1} up to date before the step.

The start: every agent knows x_0, so x̂_i = s_i = x_0 and the first message is q = 0 (the
paper starts from x̂ = 0, which costs a first round of compressing x_0 itself). With Q =
`none` and γ = 1 a round is then CDSGD's x^{t+1} = Σ_j w_ij x_j^t − η g(x_i^t) exactly.

Momentum as the authors' code (PyTorch SGD's buffer, never mixed): b ← μ b + g; the step
takes −η b (heavy ball) or −η (g + μ b) (Nesterov).

γ may be searched before training (`tune_consensus_step_size`): CHOCO-Gossip, the same
round without gradients, from random points on the run's graph and compressor, as the
authors' `dl_code/pcode/tools/tune_consensus_stepsize.py` does.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import torch

from strategies.compression import AgentCompressor, Shapes
from strategies.gossip import Agents, GradientAt, Parameters, State, Weight, add

# The authors' search: γ on a log grid over [10⁻³, 1]. Theirs has 20 points and 1000 rounds,
# minutes on a CPU for a model of 10⁵ parameters; this one 7 points (half a decade apart)
# and 50 rounds, seconds.
TUNING_GRID = tuple(float(g) for g in np.logspace(-3, 0, 7))
TUNING_ROUNDS = 50


@dataclass(frozen=True)
class Choco:
    """CHOCO-SGD's round (see the module docstring). State: x, x̂ (`x_hat`), s, the last
    message q and its compressor header (and the momentum buffer when μ > 0)."""

    consensus_step_size: float
    compression: AgentCompressor
    momentum: float = 0.0
    nesterov: bool = False
    name: str = "choco"
    ahead: ClassVar[bool] = False
    exchanges_at_start: ClassVar[bool] = True

    def bind(self, seed: int, agents: Agents) -> Choco:
        return replace(self, compression=self.compression.bind(seed, agents))

    def start(self, x0: list[torch.Tensor], gradient_at: GradientAt, lr: float) -> State:
        """x̂ = s = x_0; the first message is Q(0) = 0."""
        q, header = self.compression.compress([torch.zeros_like(x) for x in x0], 0)
        state = {"x": list(x0), "x_hat": list(x0), "s": list(x0), "q": q, "header": header}
        if self.momentum:
            state["buffer"] = [torch.zeros_like(x) for x in x0]
        return state

    def message(self, state: State) -> list[torch.Tensor]:
        return state["q"]

    def model(self, state: State) -> list[torch.Tensor]:
        return state["x"]

    def _step(self, state: State, gradient: Parameters, lr: float) -> dict[str, list[Any]]:
        """x^{t+½} (and the new momentum buffer)."""
        if not self.momentum:
            return {"x": [x - lr * g for x, g in zip(state["x"], gradient, strict=True)]}
        buffer = [self.momentum * b + g for b, g in zip(state["buffer"], gradient, strict=True)]
        direction = [g + self.momentum * b for g, b in zip(gradient, buffer, strict=True)] \
            if self.nesterov else buffer
        return {"x": [x - lr * d for x, d in zip(state["x"], direction, strict=True)],
                "buffer": buffer}

    def advance(self, state: State, mixed: Parameters, own_weight: Weight,
                gradient_at: GradientAt, lr: float, step: int) -> tuple[State, Any]:
        aggregate = add(state["s"], mixed)  # s^t: the neighbours' q^{t−1} arrived
        gradient, loss = gradient_at(state["x"], step)
        stepped = self._step(state, gradient, lr)
        x = [x + self.consensus_step_size * (s - h)
             for x, s, h in zip(stepped["x"], aggregate, state["x_hat"], strict=True)]
        q, header = self.compression.compress(
            [x_new - h for x_new, h in zip(x, state["x_hat"], strict=True)], step + 1)
        return {**stepped, "x": x, "x_hat": add(state["x_hat"], q), "s": aggregate, "q": q,
                "header": header}, loss

    def kept(self, state: State) -> State:
        return {part: state[part] for part in ("x", "x_hat", "s", "buffer") if part in state}

    def restore(self, own_message: list[torch.Tensor], kept: State) -> State:
        return {**kept, "q": own_message}

    def encode(self, state: State) -> list[torch.Tensor]:
        return self.compression.encode(state["q"], state["header"])

    def decode(self, wire: Sequence[torch.Tensor], shapes: Shapes) -> list[torch.Tensor]:
        return self.compression.decode(wire, shapes)


def mixing_product(matrix: np.ndarray, stack: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Σ_j w_ij m_j for every agent i of a stack (agents along dimension 0); a sparse
    product where most of Π is zero (a ring: O(edges × parameters))."""
    weights = torch.as_tensor(matrix, dtype=stack[0].dtype, device=stack[0].device)
    if np.count_nonzero(matrix) < 0.25 * matrix.size:
        weights = weights.to_sparse_coo()
    agents = len(matrix)
    return [(weights @ m.reshape(agents, -1)).reshape(m.shape) for m in stack]


def no_gradient(point: list[torch.Tensor], step: int) -> tuple[list[torch.Tensor], Any]:
    """A zero gradient for every agent of a stack: gossip alone."""
    return [torch.zeros_like(p) for p in point], torch.zeros(point[0].shape[0])


def choco_gossip(rule: Choco, matrix: np.ndarray, points: Sequence[torch.Tensor],
                 rounds: int) -> Iterator[State]:
    """CHOCO-Gossip (the paper's Algorithm 1): `rule`'s rounds without gradients from
    every agent's `points` (a stack, `rule` bound to agents 0 .. N − 1), starting from the
    paper's x̂ = s = 0. Yields the state after each of `rounds` rounds."""
    zeros = [torch.zeros_like(p) for p in points]
    q, header = rule.compression.compress(zeros, 0)
    state: State = {"x": list(points), "x_hat": zeros, "s": zeros, "q": q, "header": header}
    for step in range(rounds):
        state, _ = rule.advance(state, mixing_product(matrix, rule.message(state)), 0.0,
                                no_gradient, 0.0, step)
        yield state


def gossip_error(state: State, mean: Sequence[torch.Tensor]) -> float:
    """The authors' tuning error Σ_i ‖x_i − x̄‖² + ‖x_i − x̂_i‖² of a stacked state."""
    return float(sum(((x - m) ** 2).sum() + ((x - h) ** 2).sum()
                     for x, m, h in zip(state["x"], mean, state["x_hat"], strict=True)))


def tune_consensus_step_size(matrix: np.ndarray, shapes: Shapes, compression: AgentCompressor,
                             seed: int = 0, grid: Sequence[float] = TUNING_GRID,
                             rounds: int = TUNING_ROUNDS) -> tuple[float, dict[float, float]]:
    """γ for CHOCO on this graph (`matrix`) and compressor, by the authors' search: run
    CHOCO-Gossip from standard normal points of the model's `shapes`, one per agent, drawn
    from `seed`, for `rounds` rounds with each γ of `grid`; the γ with the smallest final
    error wins (x̄, the points' mean, never moves: Π is doubly stochastic). Returns it and
    every γ's final error."""
    agents = len(matrix)
    draws = torch.Generator().manual_seed(seed)
    points = [torch.randn(agents, *shape, generator=draws) for shape in shapes]
    mean = [p.mean(dim=0, keepdim=True) for p in points]
    bound_to = compression.bind(seed, tuple(range(agents)))
    errors = {}
    for gamma in grid:
        last = deque(choco_gossip(Choco(gamma, bound_to), matrix, points, rounds), maxlen=1)
        error = gossip_error(last[0], mean)
        errors[gamma] = error if np.isfinite(error) else float("inf")
    return min(errors, key=lambda gamma: errors[gamma]), errors
