#!/usr/bin/env bash
# The Byzantine study (docs/studies/byzantine.md): the scenarios of scenarios/byzantine/ on
# the vectorized engine (0, 1 or 2 attackers × each attack × each method × 3 seeds), then
# ClippedGossip's claims judged, logged on each parent (claims.md, plots/) and written out.
#
#   scripts/byzantine_study.sh [--set KEY=VALUE ...]
#
# By default it runs the trimmed setting the docs report (about 80 minutes of an idle 2-core
# machine): 4,000 training images and 6 epochs; on the gossip scenarios the attacks
# sign_flip, ipm, dissensus and label_flip (ALIE's default z is about 0 for 16 agents, and
# the Gaussian attack is left to the server scenario). FULL=1 runs the scenario files as
# they are (all 60,000 images, 20 epochs, every attack). Extra arguments go to every
# `decentral-bench run`.
# STORE (default sqlite:///byzantine.db) is the MLflow store, CLAIMS (default
# build/byzantine_claims.md) the claims' tables, FIGURES (default build/byzantine) the
# figures. A rerun resumes: finished runs are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
STORE=${STORE:-sqlite:///byzantine.db}
CLAIMS=${CLAIMS:-build/byzantine_claims.md}
FIGURES=${FIGURES:-build/byzantine}
BIN=${BIN:-.venv/bin}
# attacks_server is the server side: FedAvg against Flower's FedMedian and Krum.
SCENARIOS=${SCENARIOS:-"attacks attacks_ring attacks_server"}
for name in $SCENARIOS; do
    file="scenarios/byzantine/$name.yaml"
    TRIM=(--set dataset.train_samples=4000 --set training.epochs=6)
    if [ "$name" != attacks_server ]; then
        TRIM+=(--set 'sweep={adversaries.count: [0, 1, 2], adversaries.attack: [sign_flip, ipm, dissensus, label_flip]}')
    fi
    if [ "${FULL:-0}" = 1 ]; then TRIM=(); fi
    echo "== $file"
    "$BIN/decentral-bench" run "$file" --tracking-uri "$STORE" ${TRIM[@]+"${TRIM[@]}"} "$@"
done
mkdir -p "$(dirname "$CLAIMS")"
# Every study the store holds (byzantine_torus, byzantine_ring, byzantine_server) is judged.
"$BIN/decentral-bench" claims --tracking-uri "$STORE" --output "$CLAIMS" --figures "$FIGURES"
