"""A gossip round block by block of agents: mixing, gradients and the rule's update of a
few agents at a time, written into the next state as they finish.

A rule works on one agent's tensors or on a stack of agents (`strategies.gossip`), so
it works on any block of rows of the stack: agent j's new state depends on its own rows
of the state, of Π_k's product and of its gradients only. Round k therefore runs, for
each block B of agents,

    mixed_B = (Π_k M_k)_B                       (rows B of Π_k: `Mixer.rows`)
    state_{k+1, B} = gossip_round(rule, state_{k, B}, mixed_B, g_B, ...)

and writes state_{k+1, B} into the rows B of the next state. A block's minibatches,
activations, gradients, mixed points and the rule's intermediate results are
block-sized and freed before the next block starts; what a round holds besides them is
the state it started from (every message must stay readable until the last block has
mixed) and the next state. Every value is the one the whole-stack round computes, row
for row (tested).
"""

from __future__ import annotations

import torch

from decentral_bench.engines.vectorized.mixing import Mixer
from decentral_bench.engines.vectorized.stack import Stack, StackedRun, squared_norms
from strategies.gossip import GossipRule, State, gossip_round, keep_state_rows


def state_rows(state: State, block: slice) -> State:
    """The rows `block` of every part of a stacked state (views, no copy)."""
    return {part: [tensor[block] for tensor in tensors] for part, tensors in state.items()}


class NextState:
    """A stacked state written block by block.

    A part that a block's rule returns as one of its inputs, unchanged (Polyak's
    x_{k−1} ← x_k), is taken whole from the state the round started from: the same
    tensor, no copy. Any other part gets a stack of its own at its first block: one of
    the `spare` stacks of its shape where there is one (overwritten), else a new one.
    """

    def __init__(self, agents: int, spare: list[torch.Tensor] | None = None) -> None:
        self.agents = agents
        self.state: State = {}
        self._owned: set[int] = set()
        self._spare = spare if spare is not None else []

    def _stack_like(self, tensor: torch.Tensor) -> torch.Tensor:
        shape = (self.agents, *tensor.shape[1:])
        for i, spare in enumerate(self._spare):
            if spare.shape == shape and spare.dtype == tensor.dtype and \
                    spare.device == tensor.device:
                return self._spare.pop(i)
        return tensor.new_empty(shape)

    def write(self, block: slice, new: State, old: State, old_rows: State) -> None:
        """Rows `block` of the state are `new`, computed from `old_rows`, the rows `block`
        of the state `old`."""
        whole_of = {id(view): whole for part in old_rows
                    for view, whole in zip(old_rows[part], old[part], strict=True)}
        for part, tensors in new.items():
            stacked = self.state.setdefault(part, [])
            for i, tensor in enumerate(tensors):
                whole = whole_of.get(id(tensor))
                if i == len(stacked):  # the first block
                    if whole is not None:
                        stacked.append(whole)
                        continue
                    stacked.append(self._stack_like(tensor))
                    self._owned.add(id(stacked[i]))
                elif whole is stacked[i]:
                    continue
                elif id(stacked[i]) not in self._owned:  # carried over so far, not here
                    stacked[i] = stacked[i].clone()
                    self._owned.add(id(stacked[i]))
                stacked[i][block] = tensor


class BlockGradients:
    """g at a point for the agents of one block, on a step's minibatches; it keeps the
    squared norm of every gradient it hands out."""

    def __init__(self, run: StackedRun, block: slice) -> None:
        self.run = run
        self.agents = list(range(block.start, block.stop))
        self.norms: list[torch.Tensor] = []

    def __call__(self, points: Stack, step: int) -> tuple[Stack, torch.Tensor]:
        grads, losses = self.run.gradient_at(self.agents, [step] * len(self.agents), points)
        self.norms.append(squared_norms(grads))
        return grads, losses


def start_in_blocks(run: StackedRun, rule: GossipRule, x0: Stack, lr: float) -> State:
    """`rule.start` for every agent from the stack x_0, block by block."""
    start = NextState(run.plan.agents)
    for block in run.blocks:
        rows = [p[block] for p in x0]
        start.write(block, rule.start(rows, BlockGradients(run, block), lr), {"x0": x0},
                    {"x0": rows})
    return start.state


def parts(state: State) -> list[torch.Tensor]:
    """Every tensor of a state, each once."""
    return list({id(tensor): tensor for tensors in state.values() for tensor in tensors}
                .values())


class BlockRounds:
    """A gossip method's rounds, block by block (see the module docstring).

    The stacks of the state a round starts from that the next state does not carry over
    are spare when the round ends; the next round writes its state into them instead of
    allocating (a new stack costs a page fault per 4 KiB on the CPU). They are the
    points the previous round reported: a report sink that keeps points copies them.
    """

    def __init__(self, run: StackedRun) -> None:
        self.run = run
        self._spare: list[torch.Tensor] = []

    def round(self, rule: GossipRule, state: State, mixer: Mixer, own_weights: torch.Tensor,
              lr: float, steps: range, down: torch.Tensor | None = None,
              ) -> tuple[State, dict[str, torch.Tensor]]:
        """`round_in_blocks`, writing into the spare stacks of the previous round."""
        following, columns = round_in_blocks(self.run, rule, state, mixer, own_weights, lr,
                                             steps, down, self._spare)
        kept = {id(tensor) for tensor in parts(following)}
        self._spare = [tensor for tensor in parts(state) if id(tensor) not in kept]
        return following, columns


def round_in_blocks(run: StackedRun, rule: GossipRule, state: State, mixer: Mixer,
                    own_weights: torch.Tensor, lr: float, steps: range,
                    down: torch.Tensor | None = None, spare: list[torch.Tensor] | None = None,
                    ) -> tuple[State, dict[str, torch.Tensor]]:
    """Every agent's round (`gossip_round` on the first of `steps` with Π_k's mixing, then
    local steps), block by block; the agents marked in `down` keep their state; the next
    state's stacks are taken from `spare` where it has them. Returns the next state and
    the round's columns: each agent's mean minibatch loss and mean squared gradient norm
    over the steps."""
    agents, device = run.plan.agents, run.device
    messages = rule.message(state)
    following = NextState(agents, spare)
    losses = torch.empty(len(steps), agents, dtype=torch.float64, device=device)
    norms = torch.empty(len(steps), agents, dtype=torch.float64, device=device)
    # Every block's mixed points go into one buffer: `write` has copied what the rule made
    # of them before the next block overwrites it.
    widest = max(block.stop - block.start for block in run.blocks)
    mixed = [m.new_empty((widest, *m.shape[1:])) for m in messages]

    def block_round(block: slice) -> None:  # its temporaries are freed when it returns
        rows = state_rows(state, block)
        gradient_at = BlockGradients(run, block)
        size = block.stop - block.start
        new, block_losses = gossip_round(
            rule, rows, mixer.rows(messages, block, [m[:size] for m in mixed]),
            own_weights[block], gradient_at, lr, steps)
        if down is not None and bool(down[block].any()):
            new = keep_state_rows(down[block], new, rows)
        following.write(block, new, state, rows)
        losses[:, block] = torch.stack(block_losses).to(torch.float64)
        norms[:, block] = torch.stack(gradient_at.norms)

    for block in run.blocks:
        block_round(block)
    return following.state, {"minibatch_loss": losses.mean(dim=0),
                             "grad_norm_sq": norms.mean(dim=0)}
