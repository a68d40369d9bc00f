#!/usr/bin/env bash
# The Byzantine study (docs/studies/byzantine.md): the scenarios of scenarios/byzantine/ on
# the vectorized engine (attackers × attacks × methods × 3 seeds), then ClippedGossip's and
# the server's claims judged, logged on each parent (claims.md, plots/) and written out.
#
#   scripts/byzantine_study.sh [--set KEY=VALUE ...]
#
# By default it runs the trimmed setting the docs report: 12,000 training images and 8
# epochs (188 rounds), and of each scenario's sweep
#   attacks (torus)   0 or 1 attacker: sign_flip, ALIE at z = 10           (36 runs)
#   attacks_ring      0 or 1 attacker: sign_flip, ALIE at z = 10           (27 runs)
#   attacks_server    0, 1 or 2 attackers: sign_flip, gaussian, label_flip (63 runs)
# The torus and server parts took 87 minutes on a 2-core machine loaded by other work
# (a torus run 25 to 256 s, the robust rules the slowest; a server run 2 to 96 s); the
# ring, not run for the docs, would add an estimated 40 minutes.
# FULL=1 runs the scenario files as they are (all 60,000 images, 20 epochs, 0, 1 and 2
# attackers, every attack). Extra arguments go to every `decentral-bench run`.
# STORE (default sqlite:///byzantine.db) is the MLflow store, CLAIMS (default
# build/byzantine_claims.md) the claims' tables, FIGURES (default build/byzantine) the
# figures. A rerun resumes: finished runs are skipped, and a longer sweep list resumes the
# same parent run (its values are not part of the parent's identity).
set -euo pipefail
cd "$(dirname "$0")/.."
STORE=${STORE:-sqlite:///byzantine.db}
CLAIMS=${CLAIMS:-build/byzantine_claims.md}
FIGURES=${FIGURES:-build/byzantine}
BIN=${BIN:-.venv/bin}
ALIE='{kind: alie, z: 10}'
# attacks_server is the server side: FedAvg against Flower's FedMedian and Krum.
SCENARIOS=${SCENARIOS:-"attacks attacks_ring attacks_server"}
for name in $SCENARIOS; do
    file="scenarios/byzantine/$name.yaml"
    case $name in
        attacks | attacks_ring) sweep="{adversaries.count: [0, 1], adversaries.attack: [sign_flip, $ALIE]}" ;;
        *) sweep="{adversaries.count: [0, 1, 2], adversaries.attack: [sign_flip, gaussian, label_flip]}" ;;
    esac
    TRIM=(--set dataset.train_samples=12000 --set training.epochs=8 --set "sweep=$sweep")
    if [ "${FULL:-0}" = 1 ]; then TRIM=(); fi
    echo "== $file"
    "$BIN/decentral-bench" run "$file" --tracking-uri "$STORE" ${TRIM[@]+"${TRIM[@]}"} "$@"
done
mkdir -p "$(dirname "$CLAIMS")"
# Every study the store holds (byzantine_torus, byzantine_ring, byzantine_server) is judged.
"$BIN/decentral-bench" claims --tracking-uri "$STORE" --output "$CLAIMS" --figures "$FIGURES"
