#!/usr/bin/env bash
# make bench: all-MiniLM-L6-v2, fp32, 2 threads, batch 1x32 and 8x128, same token ids everywhere.
# Runs the Python peers (PyTorch + transformers, ONNX Runtime) from their own venv, then our
# encoder (`adalbert bench`), checks that the outputs agree and prints ms/batch and ours/peer.
#
#   tools/bench/run.sh [--peers-only] [--no-build]
#
# Env: ADALBERT_VENV (default tools/.venv), ADALBERT_BIN (default target/release/adalbert),
#      BENCH_THREADS (default 2).
# Output: a table on stdout; JSON lines in target/bench/{peers,ours}.jsonl; target/bench/summary.json.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
VENV="${ADALBERT_VENV:-tools/.venv}"
BIN="${ADALBERT_BIN:-target/release/adalbert}"
THREADS="${BENCH_THREADS:-2}"
MODEL="assets/minilm"
OUTDIR="target/bench"
PEERS_ONLY=0
BUILD=1
for a in "$@"; do
  case "$a" in
    --peers-only) PEERS_ONLY=1 ;;
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument '$a'" >&2; exit 2 ;;
  esac
done

die() { echo "bench: error: $*" >&2; exit 1; }

# --- venv with the pinned peers
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "bench: creating venv $VENV" >&2
  python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
fi
if ! "$VENV/bin/python" -c 'import torch, transformers, safetensors, onnx, onnxruntime' >/dev/null 2>&1; then
  echo "bench: installing tools/bench/requirements.txt into $VENV" >&2
  "$VENV/bin/python" -m pip install --disable-pip-version-check -r tools/bench/requirements.txt >&2 \
    || die "pip install into $VENV failed"
fi
export ADALBERT_VENV="$VENV"

# --- assets
[[ -f "$MODEL/model.safetensors" ]] || scripts/fetch-assets

mkdir -p "$OUTDIR"
: > "$OUTDIR/peers.jsonl"
: > "$OUTDIR/ours.jsonl"

# --- peers
echo "bench: peers (torch, onnxruntime), $THREADS threads" >&2
"$VENV/bin/python" tools/bench/peers.py --model "$MODEL" --out assets/bench --threads "$THREADS" \
  | tee "$OUTDIR/peers.jsonl" >&2 || die "peer benchmark failed"

# --- ours
OURS_STATUS="ok"
if [[ "$PEERS_ONLY" == 1 ]]; then
  OURS_STATUS="skipped (--peers-only)"
else
  if [[ "$BUILD" == 1 ]]; then
    command -v cargo >/dev/null 2>&1 || die "cargo not found (use --no-build with ADALBERT_BIN, or --peers-only)"
    echo "bench: cargo build --release --bin adalbert" >&2
    cargo build --release --bin adalbert >&2 || die "cargo build --release --bin adalbert failed"
  fi
  [[ -x "$BIN" ]] || die "$BIN not found (build it, or run with --peers-only)"
  for spec in "1x32 100" "8x128 20"; do
    set -- $spec
    echo "bench: RAYON_NUM_THREADS=$THREADS $BIN bench --model $MODEL --shape $1 --iters $2 --json" >&2
    line="$(RAYON_NUM_THREADS="$THREADS" OMP_NUM_THREADS="$THREADS" "$BIN" bench --model "$MODEL" --shape "$1" --iters "$2" --json | tail -n1)" \
      || die "adalbert bench --shape $1 failed"
    echo "$line" | tee -a "$OUTDIR/ours.jsonl" >&2
  done
fi

# --- table + summary.json (plain python3, no packages needed)
python3 tools/bench/report.py --peers "$OUTDIR/peers.jsonl" --ours "$OUTDIR/ours.jsonl" \
  --ours-status "$OURS_STATUS" --threads "$THREADS" --summary "$OUTDIR/summary.json"
