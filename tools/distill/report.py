#!/usr/bin/env python3
"""results/distill.md (and its loss-curve SVG) from the distill.json of a distilled student.

Usage: tools/distill/report.py STUDENT_DIR OUT.md COMMAND [--ablations CSV] [--downstream CSV]
                               [--sizes CSV] [--caps TEXT]

STUDENT_DIR is what `adalbert distill` wrote; COMMAND is the command line that made it (named
at the top of the report). The optional CSVs are tools/distill/study.py's (ablations at a fixed
step count, downstream accuracy teacher vs student, sizes); --caps states the downstream data
caps. Standard library only; every number comes from distill.json or the CSVs.
"""

import argparse
import csv
import json
import math
import os
import sys


def fmt(x, digits=4):
    return f"{x:.{digits}f}"


def svg_curve(history, path, key_x, label_x):
    """A line chart of the total and component losses against `key_x`."""
    w, h, pad = 640, 320, 48
    xs = [r[key_x] for r in history]
    series = [("total", "#1f77b4"), ("hidden", "#ff7f0e"), ("attention", "#2ca02c"), ("cosine", "#d62728")]
    ys = [r[k] for r in history for k, _ in series]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = 0.0, max(ys) * 1.05 if ys and max(ys) > 0 else 1.0

    def px(x):
        return pad + (x - x0) / (x1 - x0) * (w - 2 * pad)

    def py(y):
        return h - pad - (y - y0) / (y1 - y0) * (h - 2 * pad)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="black"/>',
           f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="black"/>',
           f'<text x="{w / 2}" y="{h - 10}" text-anchor="middle">{label_x}</text>',
           f'<text x="12" y="{h / 2}" transform="rotate(-90 12 {h / 2})" text-anchor="middle">loss</text>']
    for i in range(5):
        yv = y0 + (y1 - y0) * i / 4
        out.append(f'<text x="{pad - 4}" y="{py(yv) + 4:.1f}" text-anchor="end">{yv:.2f}</text>')
        xv = x0 + (x1 - x0) * i / 4
        out.append(f'<text x="{px(xv):.1f}" y="{h - pad + 14}" text-anchor="middle">{xv:.0f}</text>')
    for j, (k, color) in enumerate(series):
        pts = " ".join(f"{px(r[key_x]):.1f},{py(r[k]):.1f}" for r in history)
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}"/>')
        out.append(f'<text x="{w - pad - 80}" y="{pad + 14 * j}" fill="{color}">{k}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def targets(r, p, downstream_rows, ablation_rows):
    """Issue 14's three targets against what this run measured, each with its verdict, and
    the binomial standard error that says how far one seed's test accuracy can be trusted."""
    L = ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
    ratio = p["ratio"]
    L.append(f"| student backbone at most 1/3 of the teacher's parameters | {fmt(ratio, 3)} | "
             f"{'yes' if ratio <= 1 / 3 else 'no'} |")
    cos = r["held_out"]["mean_cosine"]
    L.append(f"| mean held-out cosine, student vs teacher sentence embeddings, at least 0.9 | "
             f"{fmt(cos)} | {'yes' if cos >= 0.9 else 'no'} |")
    notes = []
    if downstream_rows:
        acc = {(d["backbone"], d["task"], d["method"]): d for d in downstream_rows}
        for task in dict.fromkeys(d["task"] for d in downstream_rows):
            t, s_ = acc.get(("teacher", task, "houlsby:64")), acc.get(("student", task, "houlsby:64"))
            if t is None or s_ is None:
                continue
            ta, sa, n = float(t["test_accuracy"]), float(s_["test_accuracy"]), int(t["max_test"])
            diff = (sa - ta) * 100
            # Standard error of a difference of two accuracies on n test examples each.
            se = 100 * math.sqrt((ta * (1 - ta) + sa * (1 - sa)) / n)
            L.append(f"| student + houlsby:64 within 3 points of teacher + houlsby:64 on {task} | "
                     f"{diff:+.1f} pts (standard error {se:.1f}) | {'yes' if diff >= -3 else 'no'} |")
        notes.append("The standard errors are binomial, from at most "
                     f"{max(int(d['max_test']) for d in downstream_rows)} test examples and one "
                     "training seed, so a gap within about two of them is not resolved by this run.")
    if ablation_rows:
        trained = [a for a in ablation_rows if a["init_only"] == "no"]
        if trained:
            best = max(trained, key=lambda a: float(a["heldout_mean_cosine"]))
            notes.append(f"At the ablations' equal step count the best held-out cosine is "
                         f"`{best['run']}`'s ({best['heldout_mean_cosine']}, parameter ratio "
                         f"{best['param_ratio']}).")
    L.append("")
    if notes:
        L.append(" ".join(notes))
        L.append("")
    return L


def main():
    ap = argparse.ArgumentParser(usage=__doc__)
    ap.add_argument("student")
    ap.add_argument("out_md")
    ap.add_argument("command")
    ap.add_argument("--ablations")
    ap.add_argument("--downstream")
    ap.add_argument("--sizes")
    ap.add_argument("--caps", default="")
    opts = ap.parse_args()
    student, out_md, command = opts.student, opts.out_md, opts.command

    def rows_of(path):
        if not path:
            return None
        with open(path, newline="") as f:
            return list(csv.DictReader(f))

    ablation_rows, downstream_rows, size_rows = rows_of(opts.ablations), rows_of(opts.downstream), rows_of(opts.sizes)
    with open(os.path.join(student, "distill.json")) as f:
        r = json.load(f)
    with open(os.path.join(student, "config.json")) as f:
        cfg = json.load(f)
    rec = r["recipe"]
    init = r["init"]
    emb = init["embedding"]
    p = r["parameters"]
    stop = rec["stop"]
    stop_text = f"{stop['minutes']} minutes" if "minutes" in stop else f"{stop['steps']} steps"
    L = []
    L.append("# Distilling all-MiniLM-L6-v2 into a shared-layer ALBERT")
    L.append("")
    L.append(f"Generated by `{command}`; do not edit by hand.")
    L.append("")
    missing = []
    if downstream_rows is None:
        missing.append("no downstream (adapter) accuracy")
    if ablation_rows is None:
        missing.append("no 1-vs-2-group or E ablation *after* training (other E appear only as SVD errors)")
    L.append("**What this does not show.** One main run (a " + stop_text + " budget), one seed"
             + "".join(", " + m for m in missing) + ", no speed comparison (see `make bench`). "
             "Wall times come from a shared CPU, so steps/s and tokens/s are lower bounds for this machine.")
    L.append("")
    L.extend(targets(r, p, downstream_rows, ablation_rows))
    L.append("## Setup")
    L.append("")
    corpus = r["corpus"]
    L.append(f"- Teacher: `{r['teacher']}` (sha256 `{r['teacher_sha256'][:16]}…`), "
             f"{p['teacher']:,} backbone parameters.")
    L.append(f"- Student: ALBERT, E = {cfg['embedding_size']}, H = {cfg['hidden_size']}, "
             f"{cfg['num_hidden_groups']} shared group(s) applied {cfg['num_hidden_layers']} times, "
             f"{p['student']:,} backbone parameters ({fmt(p['ratio'], 3)} of the teacher's; "
             f"fp32 {p['student'] * 4 / 2**20:.1f} MiB vs {p['teacher'] * 4 / 2**20:.1f} MiB).")
    L.append(f"- Corpus: {r['corpus_sentences']:,} sentences, {r['corpus_tokens']:,} tokens "
             f"(at most {rec['max_len']} per sentence), sha256 `{r['corpus_sha256'][:16]}…`; "
             f"source: `{json.dumps(corpus, sort_keys=True)}`.")
    L.append(f"- Recipe: batch {rec['batch_size']}, lr {rec['lr']} (AdamW, {rec['warmup_steps']} warm-up steps, "
             f"linear decay over the budget), weight decay {rec['weight_decay']}, clipping at "
             f"{rec['max_grad_norm']}, dropout {rec['dropout']}, loss weights "
             f"hidden {rec['weights']['hidden']} / attention {rec['weights']['attention']} / "
             f"cosine {rec['weights']['cosine']}; seed {r['seed']}.")
    L.append(f"- Ran {r['steps']} steps, {r['tokens_seen']:,} tokens in {r['train_seconds']:.0f} s "
             f"({r['tokens_seen'] / max(r['train_seconds'], 1e-9):.0f} tokens/s).")
    if corpus.get("kind") == "suite":
        L.append(f"- Held out: {r['held_out']['sentences']} sentences (a seeded sample) of the offline suite's "
                 f"dev/test splits for split seed {corpus.get('split_seed')}; none is in the corpus.")
    else:
        L.append(f"- Held out: {r['held_out']['sentences']} sentences given with `--held-out`.")
    L.append("")
    L.append("## Factorized embedding: truncated SVD of the word table")
    L.append("")
    L.append("| E | relative reconstruction error of the [vocab, H] word table |")
    L.append("|---|---|")
    for e, err in emb["word_table_error"]:
        L.append(f"| {e} | {fmt(err)} |")
    L.append("")
    L.append(f"Embedding output (after `embedding_hidden_mapping_in`) against the teacher's, relative error on "
             f"{emb['fit_tokens']:,} corpus tokens at E = {emb['embedding_size']}: naive mapping "
             f"(`sqrt(H/E) diag(gamma) V_E`, bias beta) {fmt(emb['output_error_naive'])}, least-squares mapping "
             f"{fmt(emb['output_error_fitted'])} (the one used).")
    L.append("")
    L.append("## Shared-layer initialization")
    L.append("")
    L.append("Total distillation loss on a probe batch of corpus sentences, each candidate with the SVD embedding:")
    L.append("")
    L.append("| start | probe loss |")
    L.append("|---|---|")
    for name, loss in init["candidates"]:
        L.append(f"| {name} | {fmt(loss)} |")
    L.append("")
    L.append(f"Taken: {', '.join(init['chosen'])} (recipe `init = {rec['init']}`).")
    L.append("")
    L.append("Held-out agreement before any training (the SVD-only ablation), and after:")
    L.append("")
    L.append("| student | mean cosine | min cosine | loss total | hidden MSE | attention KL | 1 - cos |")
    L.append("|---|---|---|---|---|---|---|")
    rows = [("init: element-wise mean", init["mean"]),
            ("init: best single layer", init["best_layer"]),
            (f"distilled ({r['steps']} steps)", r["held_out"])]
    for name, a in rows:
        l = a["loss"]
        L.append(f"| {name} | {fmt(a['mean_cosine'])} | {fmt(a['min_cosine'])} | {fmt(l['total'])} | "
                 f"{fmt(l['hidden'])} | {fmt(l['attention'])} | {fmt(l['cosine'])} |")
    L.append("")
    L.append("Per hidden state, relative error `|s - t| / |t|` on held-out tokens "
             "(state 0: embedding output; state a: application a against the teacher layer it replaces):")
    L.append("")
    n = len(r["held_out"]["hidden_relative_error"])
    L.append("| student | " + " | ".join(str(i) for i in range(n)) + " |")
    L.append("|---|" + "---|" * n)
    for name, a in rows:
        L.append(f"| {name} | " + " | ".join(fmt(x, 3) for x in a["hidden_relative_error"]) + " |")
    L.append("")
    L.append("## Loss curve")
    L.append("")
    hist = r["history"]
    base = os.path.splitext(os.path.basename(out_md))[0]
    svg_step = f"{base}_loss_steps.svg"
    svg_time = f"{base}_loss_time.svg"
    if hist:
        svg_curve(hist, os.path.join(os.path.dirname(out_md) or ".", svg_step), "step", "step")
        svg_curve(hist, os.path.join(os.path.dirname(out_md) or ".", svg_time), "seconds", "wall time (s)")
        L.append(f"![loss against steps]({svg_step}) ![loss against wall time]({svg_time})")
        L.append("")
        L.append("Training-batch losses (one batch each, so noisy):")
        L.append("")
        L.append("| step | seconds | lr | total | hidden | attention | cosine |")
        L.append("|---|---|---|---|---|---|---|")
        k = max(1, len(hist) // 12)
        shown = hist[::k] + ([hist[-1]] if (len(hist) - 1) % k else [])
        for h in shown:
            L.append(f"| {h['step']} | {h['seconds']:.0f} | {h['lr']:.2e} | {fmt(h['total'])} | "
                     f"{fmt(h['hidden'])} | {fmt(h['attention'])} | {fmt(h['cosine'])} |")
    L.append("")
    if size_rows:
        L.append("## Size: teacher vs student")
        L.append("")
        L.append("Backbone (embeddings, E->H mapping, encoder; no pooler). The compressed column is the "
                 "8-bit bit-mask form of the compression plan, by `adalbert info --plan` (compress's "
                 "storage arithmetic: values, mask bits and scales).")
        L.append("")
        plan = size_rows[0]["plan"]
        L.append(f"| backbone | parameters | fp32 bytes | `{plan}` bytes |")
        L.append("|---|---|---|---|")
        for row in size_rows:
            L.append(f"| {row['backbone']} | {int(row['params']):,} | {int(row['fp32_bytes']):,} | "
                     f"{int(row['plan_bytes']):,} |")
        L.append("")
    if ablation_rows:
        L.append(f"## Ablations at the same step count (K = {max(int(r['steps']) for r in ablation_rows)})")
        L.append("")
        L.append("Every run: 6 applications, the same seed, corpus and held-out sentences; the SVD-only row "
                 "is the initialized student with no training (0 steps). Held-out agreement with the teacher:")
        L.append("")
        L.append("| run | E | groups | steps | student params (ratio) | mean cosine | min cosine | "
                 "loss total | last hidden rel. error |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        for row in ablation_rows:
            L.append(f"| {row['run']} | {row['embedding_size']} | {row['groups']} | {row['steps']} | "
                     f"{int(row['student_params']):,} ({row['param_ratio']}) | {row['heldout_mean_cosine']} | "
                     f"{row['heldout_min_cosine']} | {row['heldout_loss_total']} | "
                     f"{row['last_hidden_rel_error']} |")
        L.append("")
    if downstream_rows:
        L.append("## Downstream accuracy: teacher vs student")
        L.append("")
        L.append(f"Test accuracy of task bundles trained on each frozen backbone, same protocol and seed "
                 f"({opts.caps}).")
        L.append("")
        methods = sorted({r["method"] for r in downstream_rows})
        L.append("| task | " + " | ".join(f"teacher {m} | student {m} | diff" for m in methods) + " |")
        L.append("|---|" + "---|---|---|" * len(methods))
        acc = {(r["backbone"], r["task"], r["method"]): float(r["test_accuracy"]) for r in downstream_rows}
        for task in dict.fromkeys(r["task"] for r in downstream_rows):
            cells = []
            for m in methods:
                t, s_ = acc.get(("teacher", task, m)), acc.get(("student", task, m))
                diff = f"{(s_ - t) * 100:+.1f} pts" if t is not None and s_ is not None else "n/a"
                cells.append(f"{fmt(t) if t is not None else 'n/a'} | {fmt(s_) if s_ is not None else 'n/a'} | {diff}")
            L.append(f"| {task} | " + " | ".join(cells) + " |")
        L.append("")
    with open(out_md, "w") as f:
        f.write("\n".join(L))


if __name__ == "__main__":
    main()
