"""The `topology` section: the communication graph and its mixing matrix Π."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    NonNegativeInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from decentral_bench.scenario.base import Count, Strict, user_path
from decentral_bench.scenario.rules import Is, IsSet, Needs, Not, OnlyWith, Within

TopologyKind = Literal["complete", "ring", "path", "star", "torus", "hypercube", "erdos_renyi",
                       "random_regular", "small_world", "exponential", "edges",
                       "directed_ring", "directed_exponential", "directed_edges"]
MAX_AGENTS = 8192
POWERS_OF_TWO = tuple(2 ** e for e in range(MAX_AGENTS.bit_length()))

# The directed families: Π is column-stochastic (each sender splits its mass over its
# out-neighbours and itself), for push-sum methods (SGP) only.
DIRECTED_KINDS = ("directed_ring", "directed_exponential", "directed_edges")

# The families drawn at random (with topology.seed, else the training seed).
RANDOM_FAMILIES = ("erdos_renyi", "random_regular", "small_world")

# Which optional keys each graph family takes.
_FAMILY_KEYS: dict[str, tuple[str, ...]] = {
    "rows": ("torus",),
    "cols": ("torus",),
    "p": ("erdos_renyi", "small_world"),
    "degree": ("random_regular",),
    "k": ("small_world",),
    "edges": ("edges", "directed_edges"),
    "target_lambda2": RANDOM_FAMILIES,
}


def _resolve_path(value: str, info: ValidationInfo) -> str:
    """A path relative to the scenario file's folder, checked to exist."""
    base = (info.context or {}).get("base", Path.cwd())
    path = user_path(value, base)
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    return str(path.resolve())


class TopologyConfig(Strict):
    """The communication graph of the agents and its mixing matrix Π."""

    kind: TopologyKind = Field(
        "complete", description="the graph family: complete, ring, path, star, torus (rows × "
        "cols grid, wrapped), hypercube, erdos_renyi (p), random_regular (degree), "
        "small_world (Watts–Strogatz, k and p), exponential (j linked to j ± 2^i), edges (a "
        "list of your own); directed (push-sum methods such as sgp only, Π column-stochastic: "
        "j gives 1 / (out-degree + 1) to itself and each out-neighbour): directed_ring (j → "
        "j + 1), directed_exponential (j → j + 2^i), directed_edges (your own pairs j → l, "
        "strongly connected)")
    agents: Count = Field(
        5, le=MAX_AGENTS, description="number of agents N (nodes of the graph). Left out, a "
        "torus has rows × cols and an inline edge list its largest node + 1")
    rows: Count | None = Field(
        None, description="torus: grid rows (with cols). Default: √agents for a square number "
        "of agents")
    cols: Count | None = Field(
        None, description="torus: grid columns (with rows). Default: √agents")
    p: float | None = Field(
        None, gt=0.0, le=1.0, description="erdos_renyi: probability of each edge; "
        "small_world: probability of rewiring each edge. No default (erdos_renyi may give "
        "target_lambda2 instead)")
    degree: Count | None = Field(
        None, description="random_regular: degree of every agent (N × degree even, degree "
        "< N). No default (or target_lambda2)")
    k: int | None = Field(
        None, ge=2, description="small_world: ring neighbours per agent before rewiring. No "
        "default (or target_lambda2)")
    edges: tuple[tuple[NonNegativeInt, NonNegativeInt], ...] | str | None = Field(
        None, description="edges: an inline list [[j, l], ...] of agents 0 .. N − 1, or the "
        "path of a text file of 'j l' lines (relative to the scenario file's folder). No "
        "default: kind edges needs it")
    mixing: Literal["metropolis", "max_degree", "uniform", "matrix"] = Field(
        "metropolis", description="how Π's weights π_jl are built (Jiang et al. Assumption "
        "2): metropolis: 1 / (1 + max(d_j, d_l)); max_degree: 1 / (1 + d_max); uniform: "
        "1 / |Nb(j)| (regular graphs only); matrix: read from matrix_file")
    lazy: bool = Field(
        False, description="use the lazy matrix (I + Π) / 2, whose eigenvalues are all ≥ 0")
    matrix_file: str | None = Field(
        None, pattern=r"\.(npy|csv)$", description="mixing: matrix: a .npy or .csv file "
        "holding Π (N × N, symmetric, rows summing to 1), relative to the scenario file's "
        "folder. No default: mixing matrix needs it")
    target_lambda2: float | None = Field(
        None, gt=0.0, lt=1.0, description="erdos_renyi, random_regular, small_world: pick "
        "the family parameter (p, degree or k) whose Π has λ2 within 0.05 of this value in "
        "(0, 1) (Jiang et al. Fig. 2b). Default: unset, the family's own key is used")
    seed: NonNegativeInt | None = Field(
        None, description="seed of the random graph families. Default: training.seed")
    schedule: Literal["one_peer_exponential", "random_matching", "resample"] | None = Field(
        None, description="a time-varying graph, a new Π_k every round: "
        "one_peer_exponential (kind exponential, N a power of two: in round k agent i "
        "sends to i + 2^((k − 1) mod log₂ N) with weight ½), random_matching (a seeded "
        "maximal matching of the graph's edges each round, matched agents average "
        "pairwise), resample (the random family drawn again each round). Default: unset, "
        "the same graph every round")
    schedule_window: Count | None = Field(
        None, description="random_matching, resample: B, the rounds whose union of graphs "
        "must be connected (checked for the first window and every window the run "
        "completes). Default: twice the number of agents")

    rules = (
        *(OnlyWith(key, Is("kind", *kinds)) for key, kinds in _FAMILY_KEYS.items()),
        Needs(Is("kind", "erdos_renyi"), ("p", "target_lambda2"),
              "kind 'erdos_renyi' needs the edge probability p (or target_lambda2)"),
        Needs(Is("kind", "random_regular"), ("degree", "target_lambda2"),
              "kind 'random_regular' needs the degree (or target_lambda2)"),
        Needs(Is("kind", "small_world"), ("k", "target_lambda2"),
              "kind 'small_world' needs the neighbour count k (or target_lambda2)"),
        Needs(Is("kind", "small_world"), ("p",),
              "kind 'small_world' needs the rewiring probability p"),
        Needs(Is("kind", "edges", "directed_edges"), ("edges",),
              "kind 'edges' needs an edge list [[0, 1], ...] or the path of a file of 'j l' "
              "lines"),
        Within(Is("kind", *DIRECTED_KINDS), "mixing", ("metropolis",),
               "a directed graph's Π is column-stochastic by construction (1 / (out-degree + "
               "1)); leave mixing out, not {value}"),
        OnlyWith("lazy", Not(Is("kind", *DIRECTED_KINDS)),
                 "a directed graph's Π keeps its own mass already; leave lazy out"),
        Needs(IsSet("rows"), ("cols",),
              "a torus needs both rows and cols, or neither (square agents)"),
        Needs(IsSet("cols"), ("rows",),
              "a torus needs both rows and cols, or neither (square agents)"),
        Within(Is("kind", "hypercube"), "agents", POWERS_OF_TWO,
               "a hypercube needs a power of two agents, not {value}"),
        Needs(Is("mixing", "matrix"), ("matrix_file",),
              "mixing: matrix goes with matrix_file (and matrix_file with it)"),
        OnlyWith("matrix_file", Is("mixing", "matrix"),
                 "mixing: matrix goes with matrix_file (and matrix_file with it)"),
        Within(Is("schedule", "one_peer_exponential"), "kind", ("exponential",),
               "schedule one_peer_exponential runs on kind exponential (the union of its "
               "graphs), not {value}"),
        Within(Is("schedule", "one_peer_exponential"), "agents", POWERS_OF_TWO,
               "schedule one_peer_exponential needs a power of two agents (it averages "
               "exactly in log₂ N rounds only then), not {value}"),
        Within(Is("schedule", "resample"), "kind", RANDOM_FAMILIES,
               "schedule resample draws a random family again each round: kind "
               "erdos_renyi, random_regular or small_world, not {value}"),
        Within(IsSet("schedule"), "mixing", ("metropolis", "max_degree"),
               "a schedule builds its own Π_k each round: mixing metropolis or max_degree, "
               "not {value}"),
        OnlyWith("schedule_window", Is("schedule", "random_matching", "resample")),
        OnlyWith("target_lambda2", Not(IsSet("schedule")),
                 "target_lambda2 picks one graph; a schedule draws a new one each round"),
    )

    @model_validator(mode="before")
    @classmethod
    def _infer_agents(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "agents" in data:
            return data
        if data.get("kind") == "torus" and isinstance(data.get("rows"), int) \
                and isinstance(data.get("cols"), int):
            return {**data, "agents": data["rows"] * data["cols"]}
        if data.get("kind") in ("edges", "directed_edges") \
                and isinstance(data.get("edges"), list | tuple) and data["edges"]:
            nodes = [n for edge in data["edges"] if isinstance(edge, list | tuple) for n in edge
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
        return None if value is None else _resolve_path(value, info)

    @model_validator(mode="after")
    def _grid_fits(self) -> TopologyConfig:
        if self.rows is not None and self.cols is not None \
                and self.rows * self.cols != self.agents:
            raise ValueError(f"rows × cols = {self.rows * self.cols} but agents = "
                             f"{self.agents}; drop agents or make them agree")
        return self
