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


class ConsensusControlConfig(Strict):
    """Consensus control (Kong et al. 2021): gossip-only exchanges after a round's step,
    in chosen step-size phases, to keep the consensus distance Ξ² low where it matters."""

    mode: Literal["fixed", "adaptive", "exact"] = Field(
        description="fixed: gossip_steps exchanges every round; adaptive: exchanges until Ξ² "
                    "meets the target; exact: every agent gets x̄ (an all-reduce)")
    gossip_steps: int | None = Field(
        None, ge=1, description="fixed: gossip-only exchanges after every training round")
    target_ratio: float | None = Field(
        None, gt=0.0, lt=1.0, description="adaptive: after control Ξ² ≤ target_ratio × Ξ² "
                                          "before control, this round")
    target: float | None = Field(
        None, gt=0.0, description="adaptive: an absolute bound on Ξ² after control")
    max_gossip_steps: int | None = Field(
        None, ge=1, description="adaptive: at most this many exchanges per round (default 50; "
                                "reaching it is logged as an event)")
    phases: tuple[int, ...] | None = Field(
        None, description="the step-size phases (1-based, split by training.milestones) where "
                          "control acts (default: all)")

    @model_validator(mode="after")
    def _keys_fit_the_mode(self) -> ConsensusControlConfig:
        owners = {"gossip_steps": "fixed", "target_ratio": "adaptive", "target": "adaptive",
                  "max_gossip_steps": "adaptive"}
        for key, owner in owners.items():
            if getattr(self, key) is not None and self.mode != owner:
                raise ValueError(f"'{key}' applies to mode '{owner}' only, not '{self.mode}'")
        if self.mode == "fixed" and self.gossip_steps is None:
            raise ValueError("mode 'fixed' needs gossip_steps, e.g. 3")
        if self.mode == "adaptive" and self.target is None and self.target_ratio is None:
            raise ValueError("mode 'adaptive' needs target_ratio (e.g. 0.25) or target")
        if self.target is not None and self.target_ratio is not None:
            raise ValueError("give target_ratio or target, not both")
        if self.phases is not None:
            if not self.phases or any(phase < 1 for phase in self.phases):
                raise ValueError("phases are numbered from 1, e.g. [1]")
            if len(set(self.phases)) != len(self.phases):
                raise ValueError("phases must be distinct")
        return self


class MethodConfig(Strict):
    """One method to compare.

    `fraction` and `local_epochs` belong to FedAvg; `momentum`, `variant` and
    `momentum_buffer` to CDMSGD; `consensus_control` to the gossip methods (the
    registry says which algorithm takes which key).
    """

    name: str = Field(min_length=1)
    algorithm: Algorithm
    momentum: float | None = Field(None, ge=0.0, lt=1.0, description="CDMSGD μ (default 0.9)")
    variant: Literal["nesterov", "polyak"] | None = Field(
        None, description="CDMSGD momentum form (default nesterov, as the paper's experiments)")
    momentum_buffer: Literal["iterates", "local"] | None = Field(
        None, description="CDMSGD: iterates (default, the paper's equations: μ(x_k − x_{k−1})) "
                          "or local (the authors' code: a velocity of the agent's own gradient "
                          "steps, never mixed)")
    fraction: float | None = Field(None, gt=0.0, le=1.0)
    local_epochs: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0.0)
    local_steps: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    rounds: int | None = Field(None, ge=1, description="this method's rounds (default: "
                                                        "training.rounds or training.epochs)")
    epochs: float | None = Field(None, gt=0.0, description="this method's epochs instead of "
                                                            "rounds")
    consensus_control: ConsensusControlConfig | None = Field(
        None, description="gossip methods: extra gossip-only exchanges (Kong et al. 2021)")

    @model_validator(mode="after")
    def _keys_fit_the_algorithm(self) -> MethodConfig:
        if self.rounds is not None and self.epochs is not None:
            raise ValueError("give rounds or epochs, not both")
        given = {key: getattr(self, key) for key in type(self).model_fields
                 if key not in ("name", "algorithm")}
        problems = check_method_keys(self.algorithm, given)
        if problems:
            raise ValueError("; ".join(problems))
        return self
