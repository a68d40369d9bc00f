"""The vectorized engine: all agents as one batched PyTorch program (`VectorizedEngine`)."""

from decentral_bench.vectorized.engine import VectorizedEngine

__all__ = ["VectorizedEngine"]
