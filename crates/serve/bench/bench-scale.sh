#!/usr/bin/env bash
# `make bench-scale`: 64 tasks in one bundle directory, --max-loaded-tasks 8 per replica, Zipf
# task popularity with mixed single and batched requests: one replica alone, then 3 replicas
# behind nginx (deploy/nginx.conf, consistent hashing on the task). Installs nginx from Debian's
# packages when missing. Writes results/serving-scale.md. Bounded in requests and seconds.
set -euo pipefail
source "$(dirname "$0")/bundles.sh"
if ! command -v nginx >/dev/null 2>&1; then
  echo "installing nginx (apt-get)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
fi
cargo run --release -q -p adalbert-serve --example scale -- scale \
  --bin "$BIN" --model "$MODEL" --adapters "${adapters[@]}" \
  --tasks "${TASKS_N:-64}" --max-loaded "${MAX_LOADED:-8}" --replicas 3 \
  --requests "${REQUESTS:-3000}" --work target/bench-scale --out results/serving-scale.md
