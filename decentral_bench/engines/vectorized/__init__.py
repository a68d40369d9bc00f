"""The vectorized engine: all agents as one batched PyTorch program (`VectorizedEngine`).
May import: strategies, scenario, network, experiment, engines.base."""

from decentral_bench.engines.vectorized.engine import VectorizedEngine

__all__ = ["VectorizedEngine"]
