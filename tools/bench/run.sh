#!/usr/bin/env bash
# make bench: all-MiniLM-L6-v2, 2 threads, batch 1x32 and 8x128, same token ids everywhere.
# Runs the Python peers (PyTorch + transformers and ONNX Runtime, each fp32 and dynamically
# quantized int8) from their own venv and our encoder (`adalbert bench`) side by side,
# BENCH_ROUNDS times alternating (the report keeps each row's best median, which filters out
# bursts of load from other processes), then:
#   - ours fp32, ours with a houlsby:64 adapter attached, ours compressed (bf16, int8) at both shapes;
#   - adapter training steps (16x64, houlsby:64): ours vs PyTorch (tools/bench/train_peer.py);
#   - distillation steps (32x64: MiniLM teacher forward, ALBERT student E 128 x6 forward +
#     backward with the distillation losses, AdamW): `adalbert distill --bench-steps` vs
#     PyTorch (tools/bench/distill_peer.py), on the same generated corpus;
#   - a perf profile of ours at 8x128 with candle's ops (before) and adalbert's kernels (after);
# and writes results/performance.md (tools/bench/report.py).
#
#   tools/bench/run.sh [--peers-only] [--no-build]
#
# Env: ADALBERT_VENV (default tools/.venv), ADALBERT_BIN (default target/release/adalbert),
#      BENCH_THREADS (default 2), BENCH_ROUNDS (default 2), BENCH_TRAIN (default 1),
#      BENCH_DISTILL (default 1), BENCH_DISTILL_SHAPE (default 32x64), BENCH_DISTILL_ITERS (default 5),
#      BENCH_PROFILE (default 1; needs `perf`), BENCH_OUT (default results/performance.md),
#      BENCH_BUNDLE (task bundles, space-separated: also report their accuracy with candle / fp32 / bf16 / int8 kernels,
#      e.g. one from `adalbert train --task movie-polarity --adapter houlsby:64 ...`).
# Output: the table on stdout; JSON lines in target/bench/{peers,ours}.jsonl;
#         target/bench/summary.json; results/performance.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
VENV="${ADALBERT_VENV:-tools/.venv}"
BIN="${ADALBERT_BIN:-target/release/adalbert}"
THREADS="${BENCH_THREADS:-2}"
ROUNDS="${BENCH_ROUNDS:-2}"
TRAIN="${BENCH_TRAIN:-1}"
DISTILL="${BENCH_DISTILL:-1}"
DISTILL_SHAPE="${BENCH_DISTILL_SHAPE:-32x64}"
DISTILL_ITERS="${BENCH_DISTILL_ITERS:-5}"
PROFILE="${BENCH_PROFILE:-1}"
REPORT="${BENCH_OUT:-results/performance.md}"
MODEL="assets/minilm"
OUTDIR="target/bench"
PEERS_ONLY=0
BUILD=1
for a in "$@"; do
  case "$a" in
    --peers-only) PEERS_ONLY=1 ;;
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
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

# --- the CPU every figure below comes from, and the kernels each precision runs on it
if [[ "$PEERS_ONLY" == 0 && -x "$BIN" ]]; then
  "$BIN" info --kernels >&2 || true
fi

mkdir -p "$OUTDIR"
: > "$OUTDIR/peers.jsonl"
: > "$OUTDIR/ours.jsonl"
rm -f "$OUTDIR"/profile_*.txt

OURS_STATUS="ok"
if [[ "$PEERS_ONLY" == 1 ]]; then
  OURS_STATUS="skipped (--peers-only)"
elif [[ "$BUILD" == 1 ]]; then
  command -v cargo >/dev/null 2>&1 || die "cargo not found (use --no-build with ADALBERT_BIN, or --peers-only)"
  echo "bench: cargo build --release --bin adalbert" >&2
  cargo build --release --bin adalbert >&2 || die "cargo build --release --bin adalbert failed"
fi
if [[ "$PEERS_ONLY" == 0 ]]; then
  [[ -x "$BIN" ]] || die "$BIN not found (build it, or run with --peers-only)"
fi

ours() { # ours SHAPE ITERS [extra args...]
  local shape="$1" iters="$2"; shift 2
  echo "bench: $BIN bench --model $MODEL --shape $shape --iters $iters --threads $THREADS $* --json" >&2
  local line
  line="$("$BIN" bench --model "$MODEL" --shape "$shape" --iters "$iters" --threads "$THREADS" "$@" --json | tail -n1)" \
    || die "adalbert bench --shape $shape $* failed"
  echo "$line" | tee -a "$OUTDIR/ours.jsonl" >&2
}

for round in $(seq 1 "$ROUNDS"); do
  echo "bench: round $round of $ROUNDS" >&2
  # --- peers (torch first: it writes the reference outputs the others compare against)
  OMP_NUM_THREADS="$THREADS" "$VENV/bin/python" tools/bench/peers.py --model "$MODEL" --out assets/bench --threads "$THREADS" \
    | tee -a "$OUTDIR/peers.jsonl" >&2 || die "peer benchmark failed"
  # --- ours
  if [[ "$PEERS_ONLY" == 0 ]]; then
    for spec in "1x32 100" "8x128 20"; do
      set -- $spec
      ours "$1" "$2"
      ours "$1" "$2" --adapter houlsby:64
      ours "$1" "$2" --precision bf16
      ours "$1" "$2" --precision int8
    done
  fi
  # --- training throughput
  if [[ "$TRAIN" == 1 ]]; then
    OMP_NUM_THREADS="$THREADS" "$VENV/bin/python" tools/bench/train_peer.py --model "$MODEL" --shape 16x64 --iters 5 \
      --threads "$THREADS" 2>/dev/null | tee -a "$OUTDIR/peers.jsonl" >&2 || die "train_peer.py failed"
    if [[ "$PEERS_ONLY" == 0 ]]; then
      ours 16x64 5 --train --adapter houlsby:64
    fi
  fi
  # --- distillation steps: the same generated corpus (every batch exactly DISTILL_SHAPE real
  # tokens) for both; ours one warm-up then DISTILL_ITERS timed steps, like the peer
  if [[ "$DISTILL" == 1 ]]; then
    corpus="$OUTDIR/distill_corpus.txt"
    [[ -s "$corpus" ]] || "$VENV/bin/python" tools/bench/distill_peer.py --model "$MODEL" --write-corpus "$corpus" \
      || die "distill_peer.py --write-corpus failed"
    db="${DISTILL_SHAPE%x*}"; dl="${DISTILL_SHAPE#*x}"
    OMP_NUM_THREADS="$THREADS" "$VENV/bin/python" tools/bench/distill_peer.py --model "$MODEL" --corpus "$corpus" \
      --batch "$db" --max-len "$dl" --iters "$DISTILL_ITERS" --threads "$THREADS" 2>/dev/null \
      | tee -a "$OUTDIR/peers.jsonl" >&2 || die "distill_peer.py failed"
    if [[ "$PEERS_ONLY" == 0 ]]; then
      echo "bench: $BIN distill --bench-steps $DISTILL_ITERS ($DISTILL_SHAPE)" >&2
      line="$(RAYON_NUM_THREADS="$THREADS" "$BIN" distill --teacher "$MODEL" --corpus "file:$corpus" \
        --held-out "$corpus" --max-held-out 8 --embedding-size 128 --applications 6 --batch-size "$db" \
        --max-len "$dl" --bench-steps "$DISTILL_ITERS" --json | tail -n1)" || die "adalbert distill --bench-steps failed"
      echo "$line" | tee -a "$OUTDIR/ours.jsonl" >&2
    fi
  fi
done

# --- accuracy of the compressed path: one task bundle evaluated with each inference path
ACC="$OUTDIR/accuracy.jsonl"
: > "$ACC"
if [[ -n "${BENCH_BUNDLE:-}" && "$PEERS_ONLY" == 0 ]]; then
  for bundle in $BENCH_BUNDLE; do
    [[ -f "$bundle" ]] || die "BENCH_BUNDLE: $bundle not found"
    name="$(basename "$bundle" .safetensors)"
    for k in candle auto bf16 int8; do
      echo "bench: ADALBERT_KERNELS=$k $BIN eval --model $MODEL --bundle $bundle --max-len ${BENCH_MAX_LEN:-64} --json" >&2
      line="$(ADALBERT_KERNELS=$k RAYON_NUM_THREADS="$THREADS" "$BIN" eval --model "$MODEL" --bundle "$bundle" \
        --max-len "${BENCH_MAX_LEN:-64}" --json --predictions "$OUTDIR/pred_${name}_$k.tsv" 2>/dev/null | tail -n1)" \
        || die "adalbert eval ($bundle, $k) failed"
      n="$(( $(wc -l < "$OUTDIR/pred_${name}_$k.tsv") - 1 ))"  # minus the header line
      python3 -c 'import json,sys; d=json.loads(sys.argv[1]); m,v=next(iter(d.items())); print(json.dumps({"kernels":sys.argv[2],"task":sys.argv[3],"metric":m,"value":v,"examples":int(sys.argv[4])}))' \
        "$line" "$k" "$name" "$n" | tee -a "$ACC" >&2
    done
  done
fi

# --- profile: where the time goes with candle's ops (before) and with adalbert's kernels (after)
if [[ "$PROFILE" == 1 && "$PEERS_ONLY" == 0 ]] && command -v perf >/dev/null 2>&1; then
  for k in candle auto bf16 int8; do
    case "$k" in bf16|int8) args=(--precision "$k") ;; *) args=(--kernels "$k") ;; esac
    if perf record -F 499 -o "$OUTDIR/perf_$k.data" "$BIN" bench --model "$MODEL" --shape 8x128 --iters 30 \
         --threads "$THREADS" "${args[@]}" >/dev/null 2>&1; then
      perf report -i "$OUTDIR/perf_$k.data" --no-children --percent-limit 1 --stdio 2>/dev/null \
        | grep -v '^#' | grep -v '^$' | head -12 > "$OUTDIR/profile_$k.txt" || true
    else
      echo "bench: perf record failed; no profile" >&2
    fi
  done
fi

# --- table, summary.json and results/performance.md (plain python3, no packages needed)
python3 tools/bench/report.py --peers "$OUTDIR/peers.jsonl" --ours "$OUTDIR/ours.jsonl" \
  --ours-status "$OURS_STATUS" --threads "$THREADS" --summary "$OUTDIR/summary.json" \
  --profile-dir "$OUTDIR" --markdown "$REPORT" --accuracy "$ACC"
