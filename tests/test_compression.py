"""The compressors equal their definitions written out in NumPy, decode their own encoding
bitwise, travel in exactly the bytes their format says, and draw the same on one agent
as on a stack."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from strategies.compression import (
    AgentCompressor,
    Compressor,
    draw_seed,
    generator,
    pack_bits,
    unpack_bits,
)

SHAPES = [(30, 7), (7,), (4, 30)]  # 210 + 7 + 120 = 337 entries
COMPRESSORS = {
    "none": Compressor(),
    "top_k": Compressor("top_k", fraction=0.1),
    "top_k-flat": Compressor("top_k", fraction=0.1, per_tensor=False),
    "random_k": Compressor("random_k", fraction=0.2),
    "random_k-unbiased-flat": Compressor("random_k", fraction=0.2, unbiased=True,
                                         per_tensor=False),
    "qsgd-4": Compressor("qsgd", bits=4),
    "qsgd-1-unbiased": Compressor("qsgd", bits=1, unbiased=True),
    "qsgd-16-flat": Compressor("qsgd", bits=16, per_tensor=False),
    "sign": Compressor("sign"),
    "sign-flat": Compressor("sign", per_tensor=False),
}


def _stack(agents: int = 5, seed: int = 0) -> list[torch.Tensor]:
    draws = torch.Generator().manual_seed(seed)
    stack = [torch.randn(agents, *shape, generator=draws) for shape in SHAPES]
    stack[1][0] = 0.0  # a zero block: qsgd's and sign's scale 0
    stack[0][1, :3] = -0.0
    return stack


def _seeds(agents: int, draw: int = 7) -> list[int]:
    return [draw_seed(3, agent, draw) for agent in range(agents)]


@pytest.mark.parametrize("name", sorted(COMPRESSORS))
def test_decode_of_encode_is_q_bitwise_in_the_bytes_the_format_says(name: str) -> None:
    compressor = COMPRESSORS[name]
    values = _stack()
    compressed, header = compressor.compress(values, _seeds(5))
    wire = compressor.encode(compressed, header)
    decoded = compressor.decode(wire, SHAPES)
    for got, want in zip(decoded, compressed, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert torch.equal(got, want)
        assert torch.equal(torch.signbit(got), torch.signbit(want))  # −0.0 stays −0.0
    assert sum(int(array[0].nbytes) for array in wire) == compressor.wire_bytes(SHAPES)


def test_the_formats_sizes_written_out() -> None:
    """k = max(1, ⌊f d⌋) per block; top_k: values + int32 positions; random_k: values + one
    int64 seed; qsgd: a float32 scale per block, `bits` bits and a sign bit per entry;
    sign: a scale per block and a bit per entry; none: float32 values."""
    assert COMPRESSORS["none"].wire_bytes(SHAPES) == 4 * 337
    assert COMPRESSORS["top_k"].wire_bytes(SHAPES) == (21 + 1 + 12) * (4 + 4)
    assert COMPRESSORS["top_k-flat"].wire_bytes(SHAPES) == 33 * (4 + 4)
    assert COMPRESSORS["random_k"].wire_bytes(SHAPES) == (42 + 1 + 24) * 4 + 8
    assert COMPRESSORS["qsgd-4"].wire_bytes(SHAPES) == 3 * 4 + math.ceil(337 * 4 / 8) + 43
    assert COMPRESSORS["qsgd-16-flat"].wire_bytes(SHAPES) == 4 + 337 * 2 + 43
    assert COMPRESSORS["sign"].wire_bytes(SHAPES) == 3 * 4 + 43
    assert COMPRESSORS["sign-flat"].wire_bytes(SHAPES) == 4 + 43


@pytest.mark.parametrize("name", sorted(COMPRESSORS))
def test_one_agent_draws_what_its_row_of_a_stack_draws(name: str) -> None:
    """The Flower engine's agent compresses its own tensors, the vectorized engine the
    stack: the same seed (seed, agent, draw), the same Q, bitwise."""
    values = _stack()
    whole = AgentCompressor(COMPRESSORS[name], seed=3, agents=tuple(range(5)))
    stacked, _ = whole.compress(values, 7)
    for agent in range(5):
        alone = AgentCompressor(COMPRESSORS[name], seed=3, agents=agent)
        own, header = alone.compress([v[agent] for v in values], 7)
        for got, want in zip(own, stacked, strict=True):
            assert torch.equal(got, want[agent])
        wire = alone.encode(own, header)
        assert all(array.dim() == 1 for array in wire)  # one agent's arrays, no stack
        for got, want in zip(alone.decode(wire, SHAPES), own, strict=True):
            assert torch.equal(got, want)


def _blocks(values: list[torch.Tensor], agent: int, flat: bool) -> list[np.ndarray]:
    parts = [v[agent].numpy().astype(np.float64).ravel() for v in values]
    return [np.concatenate(parts)] if flat else parts


def _joined(compressed: list[torch.Tensor], agent: int) -> np.ndarray:
    return np.concatenate([c[agent].numpy().ravel() for c in compressed])


@pytest.mark.parametrize("flat", [False, True])
def test_top_k_and_sign_equal_their_numpy_definitions(flat: bool) -> None:
    values = _stack()
    for kind in ("top_k", "sign"):
        compressor = Compressor(kind, fraction=0.1, per_tensor=not flat)
        compressed, _ = compressor.compress(values, _seeds(5))
        for agent in range(5):
            expected = []
            for block in _blocks(values, agent, flat):
                if kind == "top_k":
                    k = max(1, int(0.1 * block.size))
                    kept = np.argsort(-np.abs(block), kind="stable")[:k]
                    q = np.zeros_like(block)
                    q[kept] = block[kept]
                else:  # ‖x‖₁/d · sign(x), sign(0) = +1
                    q = np.abs(block).sum() / block.size * np.where(block < 0, -1.0, 1.0)
                expected.append(q)
            np.testing.assert_allclose(_joined(compressed, agent), np.concatenate(expected),
                                       rtol=1e-6, atol=0)


@pytest.mark.parametrize(("bits", "unbiased", "flat"), [(4, False, False), (2, True, True),
                                                        (8, False, True)])
def test_qsgd_equals_the_authors_numpy_quantizer(bits: int, unbiased: bool, flat: bool) -> None:
    """`qsgd_quantize_numpy` of the authors' sparsification.py, given the uniform draws
    the agent's generator makes (one per entry, block after block)."""
    values = _stack()
    compressor = Compressor("qsgd", bits=bits, unbiased=unbiased, per_tensor=not flat)
    seeds = _seeds(5)
    compressed, _ = compressor.compress(values, seeds)
    s = 2 ** bits - 1
    for agent in range(5):
        draws, expected = generator(seeds[agent]), []
        for x in _blocks(values, agent, flat):
            uniform = torch.rand(x.size, generator=draws).numpy().astype(np.float64)
            norm = np.sqrt(np.sum(np.square(x)))
            level_float = s * np.abs(x) / norm if norm > 0 else np.zeros_like(x)
            previous_level = np.floor(level_float)
            new_level = previous_level + (uniform < level_float - previous_level)
            scale = 1.0 if unbiased else \
                1.0 / (np.minimum(x.size / s ** 2, np.sqrt(x.size) / s) + 1.0)
            expected.append(scale * np.sign(x) * norm * new_level / s)
        np.testing.assert_allclose(_joined(compressed, agent), np.concatenate(expected),
                                   rtol=1e-5, atol=1e-7)


def test_random_k_keeps_k_entries_where_its_seed_says() -> None:
    values = _stack()
    for unbiased in (False, True):
        compressor = Compressor("random_k", fraction=0.2, unbiased=unbiased, per_tensor=False)
        seeds = _seeds(5)
        compressed, header = compressor.compress(values, seeds)
        assert header[0][:, 0].tolist() == seeds
        for agent in range(5):
            x, q = _blocks(values, agent, True)[0], _joined(compressed, agent)
            kept = torch.randperm(x.size, generator=generator(seeds[agent]))[:67].numpy()
            expected = np.zeros_like(x)
            expected[kept] = x[kept] * (x.size / 67 if unbiased else 1.0)
            np.testing.assert_allclose(q, expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("name", ["random_k-unbiased-flat", "qsgd-1-unbiased"])
def test_unbiased_forms_average_to_the_input(name: str) -> None:
    """E Q(x) = x: over n draws the mean's squared error is the variance over n,
    E‖mean − x‖² = E‖Q(x) − x‖² / n (a bias b would add ‖b‖², whatever n); the biased
    form of the same compressor misses by far more."""
    x = [v[:1] for v in _stack()]
    flat = torch.cat([t.reshape(-1) for t in x]).double()

    def errors(compressor: Compressor) -> tuple[float, float]:
        draws = torch.stack([torch.cat([q.reshape(-1) for q in compressor.compress(
            x, [draw_seed(0, 0, draw)])[0]]).double() for draw in range(2000)])
        variance = float(((draws - flat) ** 2).sum(dim=1).mean())
        return float(((draws.mean(dim=0) - flat) ** 2).sum()), variance / len(draws)

    missed, expected = errors(COMPRESSORS[name])
    assert missed < 2 * expected
    biased, _ = errors(replace(COMPRESSORS[name], unbiased=False))
    assert biased > 20 * expected


@pytest.mark.parametrize("name", ["top_k", "top_k-flat", "qsgd-4", "sign", "random_k"])
def test_biased_forms_are_contractions(name: str) -> None:
    """CHOCO's assumption: E‖Q(x) − x‖² ≤ (1 − δ)‖x‖² with δ > 0; top_k holds it draw by
    draw with δ = k/d, the others on average over draws."""
    compressor = COMPRESSORS[name]
    x = [v[2:3] for v in _stack(seed=4)]  # agent 2: no zero block
    for block_x, block_q in _each_block(compressor, x):
        squared = float((block_x ** 2).sum())
        errors = [float(((q - block_x) ** 2).sum()) for q in block_q]
        assert np.mean(errors) < squared
        if name.startswith("top_k"):
            delta = compressor.kept(block_x.numel()) / block_x.numel()
            assert max(errors) <= (1 - delta) * squared * (1 + 1e-6)


def _each_block(compressor: Compressor, x: list[torch.Tensor],
                ) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
    flat = torch.cat([t.reshape(-1) for t in x])
    draws = [torch.cat([q.reshape(-1) for q in compressor.compress(x, [draw_seed(0, 0, d)])[0]])
             for d in range(50)]
    sizes = compressor.blocks([tuple(t.shape[1:]) for t in x])
    blocks, start = [], 0
    for size in sizes:
        blocks.append((flat[start:start + size], [d[start:start + size] for d in draws]))
        start += size
    return blocks


@pytest.mark.parametrize("width", [1, 3, 4, 8, 11, 16])
def test_bit_packing_round_trips(width: int) -> None:
    codes = torch.randint(0, 2 ** width, (3, 37), generator=torch.Generator().manual_seed(1))
    packed = pack_bits(codes, width)
    assert packed.dtype == torch.uint8 and packed.shape == (3, math.ceil(37 * width / 8))
    assert torch.equal(unpack_bits(packed, width, 37), codes.to(torch.int32))


def test_draw_seeds_differ_by_agent_and_draw_and_repeat() -> None:
    seeds = {draw_seed(0, agent, draw) for agent in range(20) for draw in range(20)}
    assert len(seeds) == 400
    assert all(0 <= seed < 2 ** 63 for seed in seeds)
    assert draw_seed(5, 2, 9) == draw_seed(5, 2, 9) != draw_seed(6, 2, 9)
