# Sourced by the serving benchmarks: trains the small adapter bundles they serve once (cached in
# $DIR) and sets `adapters` to their paths. Accuracy is not the point (1 epoch, 300 examples).
BIN=${BIN:-target/release/adalbert}
MODEL=${MODEL:-assets/minilm}
DIR=${BENCH_SERVE_DIR:-target/bench-serve}
TASKS="movie-polarity movie-rating tweet-sentiment amazon-polarity nyt-polarity bbc-topic"
COMMON=(--model "$MODEL" --max-train 300 --max-eval 100 --max-len 64 --epochs 1)
mkdir -p "$DIR"
adapters=()
for t in $TASKS; do
  f="$DIR/adapter-$t.safetensors"
  [ -f "$f" ] || "$BIN" train "${COMMON[@]}" --task "$t" --adapter houlsby:64 --out "$f"
  adapters+=("$f")
done
