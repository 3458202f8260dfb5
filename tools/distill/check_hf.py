#!/usr/bin/env python3
"""Check that Hugging Face transformers loads a student `adalbert distill` wrote and computes
what adalbert computes on it.

Usage:  python3 tools/distill/check_hf.py STUDENT_DIR [--bin target/release/adalbert]
                                          [--tol 1e-4] [--text TEXT ...] [--json]

1. `AlbertModel.from_pretrained(STUDENT_DIR, output_loading_info=True)`: any missing,
   unexpected or mismatched key is a failure (the checkpoint must be a complete AlbertModel).
2. `adalbert embed --model STUDENT_DIR --json --hidden TEXT...` prints, per text, its token
   ids, the last hidden state of every token and the mean-pooled vector. transformers runs the
   same token ids; the largest |difference| of last_hidden_state and of the mean-pooled vector
   must be at most --tol. When transformers can build the directory's tokenizer
   (AutoTokenizer), its token ids must equal adalbert's too.

Prints one summary line (or a JSON object with --json) and exits 1 on any failure. The script
re-executes itself inside ${ADALBERT_VENV:-tools/.venv} (tools/parity/requirements.txt).
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "parity"))
import _bootstrap  # noqa: E402

_bootstrap.ensure_venv(
    [_bootstrap.REPO / "tools" / "parity" / "requirements.txt"],
    ["torch", "transformers", "safetensors"],
)

import torch  # noqa: E402
from transformers import AlbertModel, AutoTokenizer, BertTokenizer  # noqa: E402

TEXTS = [
    "The film was a quiet, moving portrait of a family.",
    "Stocks fell sharply after the central bank raised rates.",
    "i can't believe how bad the service was today :(",
    "A short one.",
    "The striker scored twice in the second half to win the cup for his club.",
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("student", type=Path)
    ap.add_argument("--bin", default=str(_bootstrap.REPO / "target" / "release" / "adalbert"))
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--text", action="append", help="texts to compare (default: five built-in ones)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    texts = args.text or TEXTS
    failures = []

    model, info = AlbertModel.from_pretrained(str(args.student), output_loading_info=True)
    model.eval()
    loading = {k: sorted(map(str, v)) for k, v in info.items()}
    for kind, keys in loading.items():
        if keys:
            failures.append(f"{kind} keys: {keys}")

    cmd = [args.bin, "embed", "--model", str(args.student), "--json", "--hidden", *texts]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        print(f"{' '.join(cmd[:4])} failed: {run.stderr.strip()}", file=sys.stderr)
        return 1
    ours = json.loads(run.stdout)

    # The teacher's tokenizer files travel with the student: tokenizer_config.json names the
    # class (BertTokenizer for a BERT teacher); a bare vocab.txt is a WordPiece vocabulary
    # (AutoTokenizer would pick ALBERT's SentencePiece tokenizer from config.json).
    tokenizer = None
    try:
        if (args.student / "tokenizer_config.json").is_file():
            tokenizer = AutoTokenizer.from_pretrained(str(args.student))
        elif (args.student / "vocab.txt").is_file():
            tokenizer = BertTokenizer.from_pretrained(str(args.student))
    except Exception as e:  # a directory without a tokenizer transformers can build
        print(f"note: transformers cannot build the tokenizer ({e}); comparing on adalbert's ids",
              file=sys.stderr)

    max_hidden = max_pooled = 0.0
    for row in ours:
        ids = torch.tensor([row["input_ids"]], dtype=torch.long)
        types = torch.tensor([row["token_type_ids"]], dtype=torch.long)
        mask = torch.ones_like(ids)
        if tokenizer is not None:
            theirs = tokenizer(row["text"], truncation=True, max_length=ids.shape[1])["input_ids"]
            if theirs != row["input_ids"]:
                failures.append(f"token ids differ for {row['text']!r}: {theirs} vs {row['input_ids']}")
        with torch.no_grad():
            hidden = model(input_ids=ids, token_type_ids=types, attention_mask=mask).last_hidden_state[0]
        pooled = hidden.mean(0)
        h = torch.tensor(row["last_hidden_state"])
        p = torch.tensor(row["embedding"])
        max_hidden = max(max_hidden, (hidden - h).abs().max().item())
        max_pooled = max(max_pooled, (pooled - p).abs().max().item())
    if max_hidden > args.tol:
        failures.append(f"last_hidden_state differs by {max_hidden:.3e} > {args.tol:g}")
    if max_pooled > args.tol:
        failures.append(f"mean-pooled embedding differs by {max_pooled:.3e} > {args.tol:g}")

    summary = {
        "student": str(args.student),
        "texts": len(ours),
        "loading_info": loading,
        "max_abs_diff_last_hidden_state": max_hidden,
        "max_abs_diff_mean_pooled": max_pooled,
        "tolerance": args.tol,
        "tokenizer_checked": tokenizer is not None,
        "ok": not failures,
        "failures": failures,
    }
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        status = "OK" if not failures else "FAILED"
        print(f"{status}: {args.student}: AlbertModel loads with no missing/unexpected/mismatched keys"
              if not any("keys" in f for f in failures) else f"{status}: {args.student}: loading info {loading}")
        print(f"  {len(ours)} texts: max |diff| last_hidden_state {max_hidden:.3e}, "
              f"mean-pooled {max_pooled:.3e} (tolerance {args.tol:g}); "
              f"tokenizer ids {'checked' if tokenizer is not None else 'not checked'}")
        for f in failures:
            print(f"  failure: {f}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
