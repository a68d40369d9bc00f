"""Every record key and message type the ServerApp and the ClientApp exchange.

The gossip router, Flower's stock strategies (given these keys explicitly) and the
ClientApp all read them from here, so no side depends on another's defaults.

A training message holds:

- `CONFIG_KEY`: a ConfigRecord with the scenario (JSON), the method name, the
  thread budget, `server-round`, for FedProx its `PROXIMAL_MU_KEY` and for a server
  method after a server loss `LOCAL_ONLY_KEY`;
- gossip methods: the points p_k^l of Nb(j) under `neighbour_key(l)` and, under
  `MIXING_KEY`, the agents l and their weights π_jl;
- server methods: the global model under `PUBLISHED_KEY`.

A reply holds the agent's new message under `PUBLISHED_KEY` (a gossip method's message,
FedAvg's model), its model under `MODEL_KEY` when that is not its message (gradient
tracking's message carries a tracker too), and its metrics under `METRICS_KEY`,
`WEIGHT_KEY` among them (FedAvg weighs the average by it). A gossip method whose agents
start on their own (`GossipRule.exchanges_at_start`) gets one `START_KEY` message before
round 1 and replies with its first message. An asynchronous event (AD-PSGD) names the
minibatch its gradient is taken on under `STEP_KEY`; it does not evaluate (the router asks
at the end of the virtual round).
"""

from __future__ import annotations

from flwr.app import ConfigRecord, MessageType

PUBLISHED_KEY = "arrays"         # ArrayRecord: the point an agent publishes (FedAvg: global model)
MODEL_KEY = "model"              # ArrayRecord: the agent's model, where it is not its message
METRICS_KEY = "metrics"          # MetricRecord: an agent's figures of the round
CONFIG_KEY = "config"            # ConfigRecord: what to run and which round
MIXING_KEY = "mixing"            # ConfigRecord: Nb(j) as "agents" and π_jl as "weights"
IDENTITY_KEY = "identity"        # ConfigRecord: a node's "partition-id" (its agent index)
WEIGHT_KEY = "num-examples"      # metric: the agent's training samples, FedAvg's weight
LOCAL_ONLY_KEY = "local-only"    # config flag: FedAvg's server is lost, train from your own model
GOSSIP_ONLY_KEY = "gossip-only"  # config flag: consensus control, mix and move, no gradient step
START_KEY = "start"              # config flag: compute your start state and first message
ROUND_KEY = "server-round"       # config: the round being run (FedAvg sets it itself)
PROXIMAL_MU_KEY = "proximal-mu"  # config: FedProx's μ (Flower's FedProx sets it itself)
STEP_KEY = "step"                # config: an asynchronous event's minibatch (the agent's step)

TRAIN_TYPE = MessageType.TRAIN   # a round of training (or of consensus control's gossip)
EVALUATE_TYPE = MessageType.EVALUATE  # measure your point: not traffic of the modelled network
IDENTIFY_TYPE = MessageType.QUERY  # "which agent are you?"


def neighbour_key(agent: int) -> str:
    """Record key under which agent `agent`'s published arrays travel."""
    return f"x.{agent}"


def int_value(config: ConfigRecord, key: str) -> int:
    """An integer entry of a config record (a round number, an agent index)."""
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"config entry '{key}' should be an integer, got {value!r}")
    return int(value)


def number_list(config: ConfigRecord, key: str) -> list[float]:
    """A list-of-numbers entry of a config record (agents, weights)."""
    value = config[key]
    if not isinstance(value, list) or not all(isinstance(v, int | float) for v in value):
        raise TypeError(f"config entry '{key}' should be a list of numbers, got {value!r}")
    return [float(v) for v in value]
