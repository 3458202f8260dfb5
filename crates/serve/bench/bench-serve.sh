#!/usr/bin/env bash
# `make bench-serve`: train small bundles once (cached in target/bench-serve), then load-test
# `adalbert serve` on 127.0.0.1 with 1, 4 and 8 tasks, adapters vs full fine-tuned models.
# Writes results/serving.md. Bounded: a few hundred requests per configuration.
set -euo pipefail
source "$(dirname "$0")/bundles.sh"
REQUESTS=${REQUESTS:-240}
CONCURRENCY=${CONCURRENCY:-8}
full="$DIR/full-movie-polarity.safetensors"
[ -f "$full" ] || "$BIN" train "${COMMON[@]}" --task movie-polarity --mode full --out "$full"
cargo run --release -q -p adalbert-serve --example loadgen -- \
  --bin "$BIN" --model "$MODEL" --adapters "${adapters[@]}" --full "$full" \
  --tasks 1,4,8 --requests "$REQUESTS" --concurrency "$CONCURRENCY" \
  --work "$DIR/run" --out results/serving.md
