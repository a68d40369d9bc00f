"""What each method does: pure update rules, the registry, consensus control, neighbourhoods, and
the Flower side (router, stock strategies, message keys). May import: no decentral_bench module.

- `registry`: algorithm name → how it runs; `gossip`: one round of a gossip method;
- `cdsgd`, `cdmsgd`, `gradient_tracking`, `d2`, `qg_dsgdm`, `local_sgd`: the update rules;
  `server_rules`: the stock strategies' server updates as pure functions;
  `consensus_control`: Kong et al.'s control;
- `neighbourhood`: Nb(j) in Π_k; `robust`: robust aggregation of a neighbourhood (ClippedGossip,
  trimmed mean, median, Krum); `attacks`: what an attacker publishes instead of its message;
- Flower side: `gossip_router` (the serverless ServerApp's router), `stock` (Flower's stock
  strategies, configured, with observation hooks), `protocol` (message keys).
"""
