"""The `methods` section: which algorithms to compare, each with its own overrides.

What each algorithm accepts comes from the method registry (`strategies.registry`):
a key that belongs to another algorithm is an error naming the one it belongs to.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from decentral_bench.scenario.sections import Strict
from strategies.registry import ALGORITHMS, check_method_keys

Algorithm = Literal[ALGORITHMS]  # type: ignore[valid-type]


class MethodConfig(Strict):
    """One method to compare.

    `fraction` and `local_epochs` belong to FedAvg, `momentum` and `variant` to CDMSGD
    (the registry says which algorithm takes which key).
    """

    name: str = Field(min_length=1)
    algorithm: Algorithm
    momentum: float | None = Field(None, ge=0.0, lt=1.0, description="CDMSGD μ (default 0.9)")
    variant: Literal["nesterov", "polyak"] | None = Field(
        None, description="CDMSGD momentum form (default nesterov, as the paper's experiments)")
    fraction: float | None = Field(None, gt=0.0, le=1.0)
    local_epochs: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0.0)
    local_steps: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    rounds: int | None = Field(None, ge=1, description="this method's rounds (default: "
                                                        "training.rounds)")

    @model_validator(mode="after")
    def _keys_fit_the_algorithm(self) -> MethodConfig:
        given = self.model_dump(exclude={"name", "algorithm"})
        problems = check_method_keys(self.algorithm, given)
        if problems:
            raise ValueError("; ".join(problems))
        return self
