#!/usr/bin/env bash
# Submits an adalbert study to Slurm: N shards as one job array (shard.sbatch), then the merge
# job (merge.sbatch) with --dependency=afterok on the array. Prints the two job ids.
#
#   deploy/slurm/submit.sh CONFIG OUT N [SBATCH OPTION...]
#
# Run it from the folder the experiment file's relative paths start from (the repository root
# for configs/*.toml): the jobs start there. OUT must be on a file system every node mounts at
# the same path. SBATCH OPTIONs (e.g. --partition=cpu --account=nlp --cpus-per-task=8) go to
# both jobs. Env: ADALBERT_BIN (default: `adalbert` on PATH, else ./target/release/adalbert).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG OUT N [SBATCH OPTION...]" >&2
    exit 2
fi
config=$1 out=$2 n=$3
shift 3
case "$n" in
'' | *[!0-9]* | 0) echo "submit.sh: N must be a whole number of shards, at least 1 (got '$n')" >&2; exit 2 ;;
esac
bin="${ADALBERT_BIN:-$(command -v adalbert || echo "$PWD/target/release/adalbert")}"
if [ ! -x "$bin" ]; then
    echo "submit.sh: no adalbert binary at $bin: run \`make build\` or set ADALBERT_BIN" >&2
    exit 1
fi
mkdir -p "$out/logs"
config="$(cd "$(dirname "$config")" && pwd)/$(basename "$config")"
out="$(cd "$out" && pwd)"
# Validate the file and show the plan before anything is queued.
"$bin" run "$config" --out "$out" --list-items --shard "1/$n" | sed -n '1,2p'
export ADALBERT_CONFIG="$config" ADALBERT_OUT="$out" ADALBERT_BIN="$bin"
array="$(sbatch --parsable --export=ALL --array="0-$((n - 1))" \
    --output="$out/logs/%x-%A_%a.out" "$@" "$here/shard.sbatch")"
array="${array%%;*}"
merge="$(sbatch --parsable --export=ALL --dependency="afterok:$array" --kill-on-invalid-dep=yes \
    --output="$out/logs/%x-%j.out" "$@" "$here/merge.sbatch")"
merge="${merge%%;*}"
echo "submitted: shards job $array (array 0-$((n - 1))), merge job $merge (after every shard succeeds)"
echo "logs: $out/logs; progress: $bin run $config --out $out --list-items --shard I/$n"
echo "$array $merge" >"$out/logs/jobs"
