#!/usr/bin/env python3
"""Check an `adalbert export` directory with the real library: load it as a user would and
compare its predictions with `adalbert predict --json` on the same texts.

Usage:
  python3 tools/interop/check_export.py --format peft|adapterhub --model MODEL_DIR \
      --bundle B.bundle.safetensors --export EXPORT_DIR [--adalbert PATH] [TEXT ...]

PEFT:       AutoModelForSequenceClassification.from_pretrained(MODEL_DIR, num_labels=N) +
            PeftModel.from_pretrained(model, EXPORT_DIR)      (venv: ${ADALBERT_VENV})
AdapterHub: AutoAdapterModel.from_pretrained(MODEL_DIR) + load_adapter(EXPORT_DIR,
            use_safetensors=True) + set_active_adapters       (venv: ${ADALBERT_ADAPTERS_VENV})

`adalbert predict --json` prints class probabilities (softmax of the logits) or the regression
value, so this compares the library's softmax with them, and the centered log-probabilities
(the logits up to the per-row constant softmax drops). Prints one JSON object; exits 1 when
the largest difference exceeds --tol (default 1e-4).
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _venv  # noqa: E402

TEXTS = [
    "the film was a delight from start to finish",
    "markets fell sharply after the central bank raised rates",
    "i would not recommend this phone to anyone",
    "the striker scored twice in the second half",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--format", choices=["peft", "adapterhub"], required=True)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--export", type=Path, required=True)
    ap.add_argument("--adalbert", default=str(_venv.REPO / "target/release/adalbert"))
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("texts", nargs="*")
    args = ap.parse_args()
    _venv.ensure("peft" if args.format == "peft" else "adapters")

    import torch
    from transformers import AutoTokenizer

    texts = args.texts or TEXTS
    out = subprocess.run(
        [args.adalbert, "predict", "--model", str(args.model), "--bundle", str(args.bundle),
         "--max-len", str(args.max_len), "--json", *texts],
        check=True, capture_output=True, text=True,
    ).stdout
    preds = next(iter(json.loads(out).values()))
    ours = torch.tensor([p["scores"] for p in preds], dtype=torch.float64)
    num_labels = ours.shape[1]

    tok = AutoTokenizer.from_pretrained(args.model)
    enc = tok(texts, padding=True, truncation=True, max_length=args.max_len, return_tensors="pt")
    if args.format == "peft":
        from peft import PeftModel
        from transformers import AutoModelForSequenceClassification

        base = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=num_labels)
        model = PeftModel.from_pretrained(base, args.export).eval()
    else:
        from adapters import AutoAdapterModel

        model = AutoAdapterModel.from_pretrained(args.model)
        name = model.load_adapter(str(args.export), use_safetensors=True)
        model.set_active_adapters(name)
        model.eval()
    with torch.no_grad():
        logits = model(**enc).logits.double()
    report = {"format": args.format, "export": str(args.export), "texts": len(texts)}
    if num_labels == 1 and not preds[0].get("label"):
        report["max_abs_diff_value"] = (logits - ours).abs().max().item()
        worst = report["max_abs_diff_value"]
    else:
        probs = logits.softmax(-1)
        report["max_abs_diff_prob"] = (probs - ours).abs().max().item()
        a = logits.log_softmax(-1)
        b = ours.clamp_min(1e-30).log()
        centered = (a - a.mean(-1, keepdim=True)) - (b - b.mean(-1, keepdim=True))
        report["max_abs_diff_centered_logit"] = centered.abs().max().item()
        worst = max(report["max_abs_diff_prob"], report["max_abs_diff_centered_logit"])
    report["ok"] = worst <= args.tol
    print(json.dumps(report))
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
