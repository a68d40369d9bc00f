"""The `topology` section: the communication graph and its mixing matrix Π."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from decentral_bench.scenario.sections import Strict

TopologyKind = Literal["complete", "ring", "path", "star", "torus", "hypercube", "erdos_renyi",
                       "random_regular", "small_world", "exponential", "edges"]

# Which optional keys each graph family takes, and which it needs.
_FAMILY_KEYS: dict[str, set[str]] = {
    "torus": {"rows", "cols"},
    "erdos_renyi": {"p", "target_lambda2"},
    "random_regular": {"degree", "target_lambda2"},
    "small_world": {"k", "p", "target_lambda2"},
    "edges": {"edges"},
}
_FAMILY_NEEDS: dict[str, tuple[str, str]] = {
    "erdos_renyi": ("p", "the edge probability p (or target_lambda2)"),
    "random_regular": ("degree", "the degree (or target_lambda2)"),
    "small_world": ("k", "the neighbour count k (or target_lambda2)"),
    "edges": ("edges", "an edge list [[0, 1], ...] or the path of a file of 'j l' lines"),
}


def _resolve_path(value: str, info: ValidationInfo) -> str:
    """A path relative to the scenario file's folder, checked to exist."""
    base = (info.context or {}).get("base", Path.cwd())
    path = Path(value).expanduser()
    path = path if path.is_absolute() else Path(base) / path
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    return str(path.resolve())


class TopologyConfig(Strict):
    """The communication graph of the agents and its mixing matrix Π."""

    kind: TopologyKind = "complete"
    agents: int = Field(5, ge=1, le=4096)
    rows: int | None = Field(None, ge=1, description="torus: grid rows")
    cols: int | None = Field(None, ge=1, description="torus: grid columns")
    p: float | None = Field(None, gt=0.0, le=1.0,
                            description="erdos_renyi: edge probability; small_world: rewiring")
    degree: int | None = Field(None, ge=1, description="random_regular: degree of every agent")
    k: int | None = Field(None, ge=2, description="small_world: ring neighbours per agent")
    edges: tuple[tuple[int, int], ...] | str | None = Field(
        None, description="edges: inline [[j, l], ...] or a file of 'j l' lines")
    mixing: Literal["metropolis", "max_degree", "uniform", "matrix"] = "metropolis"
    lazy: bool = Field(False, description="use (I + Π) / 2")
    matrix_file: str | None = Field(None, description="mixing: matrix; a .npy or .csv file")
    target_lambda2: float | None = Field(
        None, gt=0.0, lt=1.0,
        description="pick the family parameter whose Π has λ2 closest to this")
    seed: int | None = Field(None, ge=0, description="random graphs; default training.seed")

    @model_validator(mode="before")
    @classmethod
    def _infer_agents(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "agents" in data:
            return data
        if data.get("kind") == "torus" and isinstance(data.get("rows"), int) \
                and isinstance(data.get("cols"), int):
            return {**data, "agents": data["rows"] * data["cols"]}
        if data.get("kind") == "edges" and isinstance(data.get("edges"), list) and data["edges"]:
            nodes = [n for edge in data["edges"] if isinstance(edge, list) for n in edge
                     if isinstance(n, int)]
            return {**data, "agents": max(nodes) + 1} if nodes else data
        return data

    @field_validator("edges")
    @classmethod
    def _edges_file(cls, value: Any, info: ValidationInfo) -> Any:
        return _resolve_path(value, info) if isinstance(value, str) else value

    @field_validator("matrix_file")
    @classmethod
    def _matrix_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if not value.endswith((".npy", ".csv")):
            raise ValueError("the mixing matrix file must be a .npy or .csv file")
        return _resolve_path(value, info)

    @model_validator(mode="after")
    def _keys_fit_the_family(self) -> TopologyConfig:
        allowed = _FAMILY_KEYS.get(self.kind, set())
        for key in ("rows", "cols", "p", "degree", "k", "edges", "target_lambda2"):
            if getattr(self, key) is not None and key not in allowed:
                takes = f"; it takes: {', '.join(sorted(allowed))}" if allowed else ""
                raise ValueError(f"'{key}' does not apply to kind '{self.kind}'{takes}")
        if self.kind in _FAMILY_NEEDS:
            key, what = _FAMILY_NEEDS[self.kind]
            if getattr(self, key) is None and self.target_lambda2 is None:
                raise ValueError(f"kind '{self.kind}' needs {what}")
        if self.kind == "edges" and self.target_lambda2 is not None:
            raise ValueError("target_lambda2 needs a random graph family")
        if self.kind == "small_world" and self.p is None:
            raise ValueError("kind 'small_world' needs the rewiring probability p")
        if self.kind == "torus":
            if (self.rows is None) != (self.cols is None):
                raise ValueError("a torus needs both rows and cols, or neither (square agents)")
            if self.rows is not None and self.cols is not None \
                    and self.rows * self.cols != self.agents:
                raise ValueError(f"rows × cols = {self.rows * self.cols} but agents = "
                                 f"{self.agents}; drop agents or make them agree")
        if self.kind == "hypercube" and self.agents & (self.agents - 1):
            raise ValueError(f"a hypercube needs a power of two agents, not {self.agents}")
        if (self.mixing == "matrix") != (self.matrix_file is not None):
            raise ValueError("mixing: matrix goes with matrix_file (and matrix_file with it)")
        return self
