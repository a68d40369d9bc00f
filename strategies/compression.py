"""Compressors for gossip messages: Q(v) over a parameter list, and the bytes it travels as.

Koloskova, Stich, Jaggi (ICML 2019), section 3 and table 1, as the authors' code computes
them (epfml/ChocoSGD, `dl_code/pcode/utils/sparsification.py`). A compressor acts on each
*block* of v on its own: each parameter tensor (`per_tensor`, the authors' choice), or the
whole model flattened into one vector. For a block x of d entries:

- `top_k`:    the k = max(1, ⌊f d⌋) entries of largest |x_i|, the others zero;
- `random_k`: k entries drawn uniformly without replacement, the others zero; times d/k
              when `unbiased` (E Q(x) = x), else biased (E Q(x) = (k/d) x, a contraction);
- `qsgd`:     s = 2^bits − 1 levels, stochastic rounding (Alistarh et al. 2017):
              Q(x)_i = sign(x_i) ‖x‖₂ ℓ_i / (s τ), ℓ_i = ⌊s|x_i|/‖x‖₂⌋ + Bernoulli(frac.),
              τ = 1 + min(d/s², √d/s) unless `unbiased` (τ = 1): the scaled form is the
              contraction CHOCO needs (the authors' `qsgd-biased`);
- `sign`:     the scaled sign ‖x‖₁/d · sign(x) (sign(0) = +1: one bit cannot say 0);
- `none`:     Q(x) = x.

Random draws come from a `torch.Generator` on the CPU seeded from (seed, agent, draw)
(`draw_seed`), so the Flower engine's agents and the vectorized engine's stack draw the
same masks and roundings. Every function works on a *stack*: each tensor with the agents
along dimension 0 (one agent is a stack of one).

On the wire (`encode`, `decode`; `wire_bytes` is their size, fixed for a compressor and a
model) a message is:

- `none`:     the D values (float32);
- `top_k`:    the K = Σ k values (float32) and their positions in the flattened model (int32);
- `random_k`: the K values (float32) and the generator's seed (one int64): the receiver
              draws the same positions;
- `qsgd`:     one scale ‖x‖₂/(sτ) per block (float32), each entry's level in `bits` bits
              and its sign in one bit, packed;
- `sign`:     one scale ‖x‖₁/d per block (float32) and one packed sign bit per entry.

`encode` reads only Q(v) and its header (the compressor's per-block scales, or the seed),
and `decode(encode(Q(v))) == Q(v)` bitwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from strategies.gossip import Agents

Kind = Literal["none", "top_k", "random_k", "qsgd", "sign"]
Stack = list[torch.Tensor]  # one tensor per parameter (or wire field), agents along dim 0
Shapes = Sequence[tuple[int, ...]]  # one agent's parameter shapes

FLOAT_BYTES, INDEX_BYTES, SEED_BYTES = 4, 4, 8
_SALT = 0xC0DE  # keeps the compressors' draws apart from the other seeded streams


def draw_seed(seed: int, agent: int, draw: int) -> int:
    """The generator seed of one agent's `draw`-th compression: a 63-bit integer, the same
    in every process (it travels as an int64 in place of `random_k`'s positions)."""
    words = np.random.SeedSequence([_SALT, seed, agent, draw]).generate_state(2, np.uint32)
    return int(words[0]) << 31 | int(words[1]) >> 1


def generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)


def _flat(stack: Stack) -> torch.Tensor:
    """Every agent's parameters as one row: (agents, D)."""
    agents = stack[0].shape[0]
    return torch.cat([tensor.reshape(agents, -1) for tensor in stack], dim=1)


def _unflat(flat: torch.Tensor, shapes: Shapes) -> Stack:
    agents, parts, start = flat.shape[0], [], 0
    for shape in shapes:
        size = math.prod(shape)
        parts.append(flat[:, start:start + size].reshape(agents, *shape))
        start += size
    return parts


def pack_bits(codes: torch.Tensor, width: int) -> torch.Tensor:
    """(agents, n) integers below 2^width → (agents, ⌈n·width/8⌉) bytes, most significant
    bit first."""
    shifts = torch.arange(width - 1, -1, -1, dtype=torch.int32, device=codes.device)
    bits = ((codes.to(torch.int32).unsqueeze(-1) >> shifts) & 1).reshape(codes.shape[0], -1)
    bits = torch.nn.functional.pad(bits, (0, (-bits.shape[1]) % 8))
    weights = 1 << torch.arange(7, -1, -1, dtype=torch.int32, device=codes.device)
    return (bits.reshape(codes.shape[0], -1, 8) * weights).sum(dim=-1).to(torch.uint8)


def unpack_bits(packed: torch.Tensor, width: int, count: int) -> torch.Tensor:
    """The inverse of `pack_bits`: (agents, count) integers (int32)."""
    shifts = torch.arange(7, -1, -1, dtype=torch.int32, device=packed.device)
    bits = ((packed.to(torch.int32).unsqueeze(-1) >> shifts) & 1).reshape(packed.shape[0], -1)
    weights = 1 << torch.arange(width - 1, -1, -1, dtype=torch.int32, device=packed.device)
    return (bits[:, :count * width].reshape(packed.shape[0], count, width) * weights).sum(-1)


def _signed(negative: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """±magnitude, negative where `negative` (the one rounding both sides compute)."""
    return torch.where(negative, -magnitude, magnitude)


@dataclass(frozen=True)
class Compressor:
    """One compressor Q and its wire format (see the module docstring). `fraction` is
    top_k's and random_k's f, `bits` qsgd's; `unbiased` applies to random_k and qsgd."""

    kind: Kind = "none"
    fraction: float = 1.0
    bits: int = 8
    unbiased: bool = False
    per_tensor: bool = True

    # ------------------------------------------------------------------ shapes and sizes

    def blocks(self, shapes: Shapes) -> list[int]:
        """The sizes of the blocks compressed on their own: each tensor's, or the model's."""
        sizes = [math.prod(shape) for shape in shapes]
        return sizes if self.per_tensor else [sum(sizes)]

    def kept(self, size: int) -> int:
        """k of a block of `size` entries: max(1, ⌊f · size⌋)."""
        return max(1, math.floor(self.fraction * size + 1e-9))

    @property
    def levels(self) -> int:
        """qsgd's s = 2^bits − 1."""
        return 2 ** self.bits - 1

    def qsgd_tau(self, size: int) -> float:
        """τ of a block: 1 + min(d/s², √d/s), or 1 when unbiased."""
        s = self.levels
        return 1.0 if self.unbiased else 1.0 + min(size / s ** 2, math.sqrt(size) / s)

    def wire_bytes(self, shapes: Shapes) -> int:
        """Bytes of one agent's encoded message (`encode`'s arrays): fixed by the compressor
        and the model's shapes, whatever the values."""
        blocks = self.blocks(shapes)
        total = sum(blocks)
        if self.kind == "none":
            return FLOAT_BYTES * total
        if self.kind == "top_k":
            return (FLOAT_BYTES + INDEX_BYTES) * sum(self.kept(size) for size in blocks)
        if self.kind == "random_k":
            return FLOAT_BYTES * sum(self.kept(size) for size in blocks) + SEED_BYTES
        signs = math.ceil(total / 8)
        scales = FLOAT_BYTES * len(blocks)
        if self.kind == "sign":
            return scales + signs
        return scales + math.ceil(total * self.bits / 8) + signs

    # ------------------------------------------------------------------ Q

    def compress(self, values: Stack, seeds: Sequence[int]) -> tuple[Stack, Stack]:
        """Q of every agent's `values` (a stack), agent i drawing from `generator(seeds[i])`.
        Returns Q(v) (a stack of v's shapes) and its header: the per-block scales (qsgd,
        sign), the seeds (random_k) or nothing."""
        if self.kind == "none":
            return list(values), []
        shapes = [tuple(tensor.shape[1:]) for tensor in values]
        flat = _flat(values)
        blocks = torch.split(flat, self.blocks(shapes), dim=1)
        if self.kind == "top_k":
            return _unflat(torch.cat([self._top_k(block) for block in blocks], 1), shapes), []
        if self.kind == "random_k":
            generators = [generator(seed) for seed in seeds]
            parts = [self._random_k(block, generators) for block in blocks]
            header = torch.tensor(list(seeds), dtype=torch.int64, device=flat.device)
            return _unflat(torch.cat(parts, 1), shapes), [header.unsqueeze(1)]
        if self.kind == "sign":
            scales = torch.stack([_mean_magnitude(block) for block in blocks], dim=1)
            parts = [_signed(block < 0, scales[:, [b]].expand_as(block))
                     for b, block in enumerate(blocks)]
            return _unflat(torch.cat(parts, 1), shapes), [scales]
        generators = [generator(seed) for seed in seeds]
        quantized = [self._qsgd(block, generators) for block in blocks]
        scales = torch.stack([scale for scale, _ in quantized], dim=1)
        return _unflat(torch.cat([q for _, q in quantized], 1), shapes), [scales]

    def _top_k(self, block: torch.Tensor) -> torch.Tensor:
        chosen = torch.topk(block.abs(), self.kept(block.shape[1]), dim=1, sorted=False).indices
        return torch.zeros_like(block).scatter(1, chosen, block.gather(1, chosen))

    def _positions(self, size: int, generators: Sequence[torch.Generator],
                   device: torch.device) -> torch.Tensor:
        """Each agent's k positions in a block of `size` entries: (agents, k)."""
        k = self.kept(size)
        return torch.stack([torch.randperm(size, generator=g)[:k] for g in generators]
                           ).to(device)

    def _random_k(self, block: torch.Tensor, generators: Sequence[torch.Generator],
                  ) -> torch.Tensor:
        chosen = self._positions(block.shape[1], generators, block.device)
        values = block.gather(1, chosen)
        if self.unbiased:
            values = values * (block.shape[1] / chosen.shape[1])
        return torch.zeros_like(block).scatter(1, chosen, values)

    def _qsgd(self, block: torch.Tensor, generators: Sequence[torch.Generator],
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale ‖x‖₂/(sτ) of each agent, Q(x)) of one block."""
        size, s = block.shape[1], self.levels
        norm = torch.linalg.vector_norm(block.to(torch.float64), dim=1).to(block.dtype)
        safe = torch.where(norm > 0, norm, torch.ones_like(norm)).unsqueeze(1)
        level = s * block.abs() / safe
        lower = torch.floor(level)
        uniform = torch.stack([torch.rand(size, generator=g) for g in generators]
                              ).to(block.device, block.dtype)
        levels = torch.clamp(lower + (uniform < level - lower).to(block.dtype), 0, s)
        scale = norm / (s * self.qsgd_tau(size))
        return scale, _signed(block < 0, scale.unsqueeze(1) * levels)

    # ------------------------------------------------------------------ the wire

    def encode(self, compressed: Stack, header: Stack) -> Stack:
        """The wire arrays of every agent's Q(v) (a stack of `compress`'s output and its
        header), agents along dimension 0."""
        shapes = [tuple(tensor.shape[1:]) for tensor in compressed]
        flat = _flat(compressed)
        if self.kind == "none":
            return [flat]
        sizes = self.blocks(shapes)
        if self.kind in ("top_k", "random_k"):
            positions = self._wire_positions(flat, sizes, header)
            values = flat.gather(1, positions)
            if self.kind == "top_k":
                return [values, positions.to(torch.int32)]
            return [values, header[0]]
        scales = header[0]
        negative = pack_bits(torch.signbit(flat), 1)
        if self.kind == "sign":
            return [scales, negative]
        per_entry = torch.repeat_interleave(scales, torch.tensor(sizes, device=flat.device),
                                            dim=1)
        levels = torch.where(per_entry > 0, torch.round(flat.abs() / per_entry),
                             torch.zeros_like(flat))
        return [scales, pack_bits(torch.clamp(levels, 0, self.levels), self.bits), negative]

    def _wire_positions(self, flat: torch.Tensor, sizes: list[int],
                        header: Stack) -> torch.Tensor:
        """top_k: positions (in the flattened model) covering each block's k non-zeros of
        Q(v); random_k: the positions the seed draws."""
        generators = [generator(int(seed)) for seed in header[0][:, 0].tolist()] \
            if self.kind == "random_k" else []
        positions, start = [], 0
        for size in sizes:
            if self.kind == "top_k":
                block = flat[:, start:start + size]
                chosen = torch.topk(block.abs(), self.kept(size), dim=1, sorted=False).indices
            else:
                chosen = self._positions(size, generators, flat.device)
            positions.append(chosen + start)
            start += size
        return torch.cat(positions, dim=1)

    def decode(self, wire: Stack, shapes: Shapes) -> Stack:
        """Every agent's Q(v) from its wire arrays (`encode`'s, agents along dim 0)."""
        agents, device = wire[0].shape[0], wire[0].device
        sizes = self.blocks(shapes)
        total = sum(sizes)
        if self.kind == "none":
            return _unflat(wire[0], shapes)
        if self.kind in ("top_k", "random_k"):
            positions = wire[1].to(torch.int64) if self.kind == "top_k" else \
                self._wire_positions(torch.empty(agents, total, device=device), sizes, [wire[1]])
            flat = torch.zeros(agents, total, dtype=wire[0].dtype, device=device)
            return _unflat(flat.scatter(1, positions, wire[0]), shapes)
        scales = wire[0]
        per_entry = torch.repeat_interleave(scales, torch.tensor(sizes, device=device), dim=1)
        negative = unpack_bits(wire[-1], 1, total).bool()
        if self.kind == "sign":
            return _unflat(_signed(negative, per_entry), shapes)
        levels = unpack_bits(wire[1], self.bits, total).to(scales.dtype)
        return _unflat(_signed(negative, per_entry * levels), shapes)


def _mean_magnitude(block: torch.Tensor) -> torch.Tensor:
    """‖x‖₁/d of each agent's block, summed in float64 (the same for a stack of one or of
    many)."""
    return (block.to(torch.float64).abs().sum(dim=1) / block.shape[1]).to(block.dtype)


@dataclass(frozen=True)
class AgentCompressor:
    """A compressor as agents run it: agent a's `draw`-th compression draws from
    `generator(draw_seed(seed, a, draw))`. `agents` is one agent's index (its own tensors)
    or the agents of a stack (along dimension 0, in this order)."""

    compressor: Compressor
    seed: int = 0
    agents: Agents = 0

    @property
    def stacked(self) -> bool:
        return not isinstance(self.agents, int)

    def _rows(self) -> list[int]:
        return [self.agents] if isinstance(self.agents, int) else list(self.agents)

    def _stack(self, tensors: Sequence[torch.Tensor]) -> Stack:
        return list(tensors) if self.stacked else [t.unsqueeze(0) for t in tensors]

    def _unstack(self, stack: Stack) -> Stack:
        return stack if self.stacked else [t[0] for t in stack]

    def bind(self, seed: int, agents: Agents) -> AgentCompressor:
        return AgentCompressor(self.compressor, seed, agents)

    def compress(self, values: Sequence[torch.Tensor], draw: int) -> tuple[Stack, Stack]:
        """(Q(values), header) of the agents' `draw`-th compression."""
        seeds = [draw_seed(self.seed, agent, draw) for agent in self._rows()]
        compressed, header = self.compressor.compress(self._stack(values), seeds)
        return self._unstack(compressed), self._unstack(header)

    def encode(self, compressed: Sequence[torch.Tensor],
               header: Sequence[torch.Tensor]) -> Stack:
        return self._unstack(self.compressor.encode(self._stack(compressed),
                                                    self._stack(header)))

    def decode(self, wire: Sequence[torch.Tensor], shapes: Shapes) -> Stack:
        return self._unstack(self.compressor.decode(self._stack(wire), shapes))


NONE = Compressor()  # Q(v) = v
