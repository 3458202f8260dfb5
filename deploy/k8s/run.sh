#!/usr/bin/env bash
# Runs an adalbert study on Kubernetes: the shared volume, the shards (an Indexed Job), and,
# once every shard completed, the merge Job; prints the merge's log (the report's headline
# rows and its path on the volume). Edit the EDIT lines of the YAML files first.
#
#   deploy/k8s/run.sh            (kubectl's current context and namespace)
#
# Env: WAIT (how long to wait for the shards, kubectl duration, default 24h).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
wait_for() { # JOB TIMEOUT: until the job is Complete (0) or Failed (1)
    local job=$1 deadline=$((SECONDS + $2)) state
    while [ "$SECONDS" -lt "$deadline" ]; do
        state="$(kubectl get job "$job" -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type} {end}')"
        case "$state" in
        *Complete*) return 0 ;;
        *Failed*) echo "run.sh: job $job failed: kubectl describe job $job" >&2; return 1 ;;
        esac
        sleep 10
    done
    echo "run.sh: job $job still running after $2 s" >&2
    return 1
}
seconds() { # a kubectl-style duration (90s, 30m, 24h) in seconds
    case "$1" in *h) echo $((${1%h} * 3600)) ;; *m) echo $((${1%m} * 60)) ;; *s) echo "${1%s}" ;; *) echo "$1" ;; esac
}
kubectl apply -f "$here/pvc.yaml"
kubectl delete job adalbert-shards adalbert-merge --ignore-not-found
kubectl apply -f "$here/shards-job.yaml"
wait_for adalbert-shards "$(seconds "${WAIT:-24h}")"
kubectl apply -f "$here/merge-job.yaml"
wait_for adalbert-merge 3600 || { kubectl logs job/adalbert-merge >&2 || true; exit 1; }
kubectl logs job/adalbert-merge
