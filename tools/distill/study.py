#!/usr/bin/env python3
"""The distillation study behind results/distill.md: ablations, downstream accuracy and sizes,
each written as a CSV, then the report. Resumable: a run whose output exists is skipped (an
interrupted distillation continues from its run state with --resume).

Usage: tools/distill/study.py --main STUDENT_DIR [--teacher assets/minilm] [--bin BIN]
           [--runs runs/distill/study] [--results results] [--steps K] [--max-train N]
           [--max-eval N] [--epochs N] [--max-len N] [--seed S] [--command TEXT]

1. Ablations, every one at the same K optimizer steps (default 300) and seed, each measured by
   the held-out agreement its distill.json records (the same seeded sample of the offline
   suite's dev/test sentences for every run): E in {64, 128, 256} with one shared group; E 128
   with 2 groups; E 128 SVD-only (initialization, no training, `--init-only`). All apply the
   shared layer(s) 6 times. -> RESULTS/distill_ablations.csv
2. Downstream: head-only (`--mode head`) and houlsby:64 bundles on movie-polarity,
   tweet-sentiment and bbc-topic for the teacher and the main student, same protocol and seed
   (mean pooling, at most --max-train training examples, --epochs, --max-len; accuracy on at most
   --max-eval test examples with `adalbert eval --split test`). -> RESULTS/distill_downstream.csv
   (--embedding-sizes and --base-e change the ablations' E, --data the suite's folder: a tiny
   teacher and the test fixtures prove the whole pipeline in seconds.)
3. Sizes: backbone parameters and bytes (no pooler), fp32 and under the 8-bit bit-mask plan
   `int8+prune=0.5+bitmask`, by `adalbert info --plan` (compress's storage arithmetic).
   -> RESULTS/distill_sizes.csv
4. results/distill.md from the main student's distill.json and the three CSVs
   (tools/distill/report.py).

Standard library only.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TASKS = ["movie-polarity", "tweet-sentiment", "bbc-topic"]
METHODS = [("head", ["--mode", "head"]), ("houlsby:64", ["--adapter", "houlsby:64"])]


def ablation_list(sizes, base):
    """(name, embedding size, groups, init only): each E with one group, then the base E with
    2 groups and the base E initialized only."""
    runs = [(f"E{e}", e, 1, False) for e in sizes]
    runs.append((f"E{base}-2groups", base, 2, False))
    runs.append((f"E{base}-svd-only", base, 1, True))
    return runs
PLAN = "int8+prune=0.5+bitmask"


def run(cmd, capture=True):
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    r = subprocess.run(cmd, stdout=subprocess.PIPE if capture else None, text=True)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}")
    return r.stdout


def write_csv(path, header, rows):
    """Written whole or not at all (a temporary beside it, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)


def ablations(a, runs):
    rows = []
    for name, e, groups, init_only in ablation_list(a.embedding_sizes, a.base_e):
        out = runs / "ablations" / name
        if not (out / "distill.json").is_file():
            cmd = [a.bin, "distill", "--teacher", a.teacher, "--out", str(out),
                   "--embedding-size", str(e), "--groups", str(groups), "--applications", "6",
                   "--steps", str(a.steps), "--warmup-steps", str(min(100, max(1, a.steps // 10))),
                   "--seed", str(a.seed), "--resume", "--json"]
            if a.data:
                cmd += ["--corpus", f"suite:{a.data}"]
            if init_only:
                cmd.append("--init-only")
            run(cmd)
        r = json.loads((out / "distill.json").read_text())
        ho = r["held_out"]
        rows.append([name, e, groups, "yes" if init_only else "no", r["steps"],
                     r["parameters"]["student"], f"{r['parameters']['ratio']:.4f}",
                     f"{ho['mean_cosine']:.4f}", f"{ho['min_cosine']:.4f}",
                     f"{ho['loss']['total']:.4f}", f"{ho['loss']['hidden']:.4f}",
                     f"{ho['loss']['attention']:.4f}", f"{ho['loss']['cosine']:.4f}",
                     f"{ho['hidden_relative_error'][-1]:.4f}", ho["sentences"],
                     f"{r['train_seconds']:.0f}", r["seed"]])
    write_csv(a.results / "distill_ablations.csv",
              ["run", "embedding_size", "groups", "init_only", "steps", "student_params",
               "param_ratio", "heldout_mean_cosine", "heldout_min_cosine", "heldout_loss_total",
               "heldout_hidden_mse", "heldout_attention_kl", "heldout_one_minus_cos",
               "last_hidden_rel_error", "heldout_sentences", "train_seconds", "seed"], rows)


def downstream(a, runs):
    rows = []
    data = ["--data", a.data] if a.data else []
    for model_name, model in [("teacher", a.teacher), ("student", a.main)]:
        for task in TASKS:
            for method, flags in METHODS:
                tag = method.replace(":", "")
                bundle = runs / "downstream" / f"{model_name}-{task}-{tag}.safetensors"
                if not bundle.is_file():
                    run([a.bin, "train", "--model", model, "--task", task, *flags, *data,
                         "--pooling", "mean", "--max-train", str(a.max_train),
                         "--max-eval", str(a.max_eval), "--max-len", str(a.max_len),
                         "--epochs", str(a.epochs), "--seed", str(a.seed),
                         "--out", str(bundle), "--json", "--resume"])
                metrics = runs / "downstream" / f"{model_name}-{task}-{tag}.test.json"
                if not metrics.is_file():
                    out = run([a.bin, "eval", "--model", model, "--bundle", str(bundle), *data,
                               "--split", "test", "--max-examples", str(a.max_eval),
                               "--max-len", str(a.max_len), "--json"])
                    tmp = metrics.with_name(f".{metrics.name}.{os.getpid()}.tmp")
                    tmp.write_text(out.strip().splitlines()[-1] + "\n")
                    os.replace(tmp, metrics)
                m = json.loads(metrics.read_text())
                rows.append([model_name, task, method, f"{m['accuracy']:.4f}", a.max_train,
                             a.max_eval, a.epochs, a.max_len, a.seed])
    write_csv(a.results / "distill_downstream.csv",
              ["backbone", "task", "method", "test_accuracy", "max_train", "max_test",
               "epochs", "max_len", "seed"], rows)


def sizes(a):
    rows = []
    for name, model in [("teacher", a.teacher), ("student", a.main)]:
        info = json.loads(run([a.bin, "info", "--model", model, "--plan", PLAN, "--json"]))
        backbone = info["params"]["backbone"]
        plan = info["plans"][0]
        rows.append([name, backbone, backbone * 4, PLAN,
                     plan["backbone_payload_bytes"] + plan["backbone_metadata_bytes"]])
    write_csv(a.results / "distill_sizes.csv",
              ["backbone", "params", "fp32_bytes", "plan", "plan_bytes"], rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--main", required=True, help="the main (long-run) student directory")
    ap.add_argument("--teacher", default="assets/minilm")
    ap.add_argument("--bin", default="target/release/adalbert")
    ap.add_argument("--runs", type=Path, default=Path("runs/distill/study"))
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--steps", type=int, default=300, help="K, the steps of every ablation")
    ap.add_argument("--embedding-sizes", default="64,128,256",
                    type=lambda t: [int(x) for x in t.split(",")])
    ap.add_argument("--base-e", type=int, default=128, help="E of the 2-group and SVD-only runs")
    ap.add_argument("--data", help="the offline suite's data folder (default: adalbert's, assets/data)")
    ap.add_argument("--max-train", type=int, default=1000)
    ap.add_argument("--max-eval", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--command", default="tools/distill/study.py", help="named in the report")
    a = ap.parse_args()
    if not (Path(a.main) / "distill.json").is_file():
        sys.exit(f"--main: {a.main} has no distill.json (run `make albert` first)")
    ablations(a, a.runs)
    downstream(a, a.runs)
    sizes(a)
    run([sys.executable, str(HERE / "report.py"), a.main, str(a.results / "distill.md"), a.command,
         "--ablations", str(a.results / "distill_ablations.csv"),
         "--downstream", str(a.results / "distill_downstream.csv"),
         "--sizes", str(a.results / "distill_sizes.csv"),
         "--caps", f"at most {a.max_train} training and {a.max_eval} test examples per task, "
                   f"{a.epochs} epochs, max length {a.max_len}, seed {a.seed}, mean pooling"],
        capture=False)


if __name__ == "__main__":
    main()
