#!/usr/bin/env bash
# Rerun the papers' scenarios (scenarios/paper/, Fashion-MNIST) and judge their claims.
#
#   scripts/reproduce_papers.sh [--set KEY=VALUE ...]
#
# Every argument goes to each `decentral-bench run`, e.g. the CPU setting of docs/papers.md:
#   scripts/reproduce_papers.sh --set 'model={name: mlp, hidden: [128]}'
# STORE (default sqlite:///papers.db) is the MLflow store; CLAIMS (default
# build/claims.md) the file the claims tables are written to; JOBS (default auto) the
# child runs each scenario runs at once (`run --jobs`: a number, or auto from the cores,
# memory and GPUs; on a Ray cluster, RAY_ADDRESS=HOST:PORT and an `mlflow server` STORE).
# A rerun resumes: finished runs are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
STORE=${STORE:-sqlite:///papers.db}
CLAIMS=${CLAIMS:-build/claims.md}
BIN=${BIN:-.venv/bin}
JOBS=${JOBS:-auto}
SCENARIOS=(fig1a_cdsgd_vs_sgd fig1b_cdmsgd_vs_fedavg fig2a_network_size fig2b_topology
           fig2b_topology_lambda2 server_failure kong_phases)
for name in "${SCENARIOS[@]}"; do
    echo "== scenarios/paper/$name.yaml"
    "$BIN/decentral-bench" run "scenarios/paper/$name.yaml" --tracking-uri "$STORE" \
        --jobs "$JOBS" "$@"
done
mkdir -p "$(dirname "$CLAIMS")"
"$BIN/decentral-bench" claims --tracking-uri "$STORE" --output "$CLAIMS"
