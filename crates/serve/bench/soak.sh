#!/usr/bin/env bash
# `make soak`: SOAK_SECONDS (default 600) of bounded mixed load on one `adalbert serve` with a
# 64-task bundle directory and --max-loaded-tasks 8, plus uploads, replacements and deletions
# over HTTP; samples RSS and fails when it does not plateau. Writes results/serving-soak.md.
set -euo pipefail
source "$(dirname "$0")/bundles.sh"
cargo run --release -q -p adalbert-serve --example scale -- soak \
  --bin "$BIN" --model "$MODEL" --adapters "${adapters[@]}" \
  --tasks 64 --max-loaded 8 --concurrency 8 --seconds "${SOAK_SECONDS:-600}" \
  --work target/bench-scale --out results/serving-soak.md
