#!/usr/bin/env python3
"""Build the committed distilled-ALBERT fixture: a tiny BERT teacher distilled for two steps into
a tiny ALBERT student by our own `adalbert distill`, and what Hugging Face transformers computes
on that student (the reference the Rust test `crates/model/tests/distilled.rs` matches).

Usage (from anywhere, after `cargo build --release -p adalbert-cli`):
    python3 tools/distill/make_fixture.py [--bin target/release/adalbert]

The script re-executes itself inside ${ADALBERT_VENV:-tools/.venv} (pinned packages of
tools/parity/requirements.txt). Not run by CI; its output is committed under
crates/model/tests/fixtures/albert_distilled/:

  student/            the directory `adalbert distill` wrote (config.json, model.safetensors,
                      vocab.txt, distill.json, sentence-transformers files), unchanged
  expected_keys.json  the state-dict keys of transformers' AlbertModel for that config, sorted
  reference.json      the sentences, transformers' (BertTokenizer) token ids of each, the
                      loading info (missing / unexpected / mismatched keys: all empty)
  reference.safetensors
                      input_ids, token_type_ids, attention_mask  i64 [B,S] (padded batch)
                      last_hidden_state                          f32 [B,S,H]
                      mean_pooled                                f32 [B,H] (mask-aware mean)

The teacher is the committed `bert` parity fixture (H 32, 3 layers, 4 heads, gelu) with the
same 99-word vocabulary `crates/train/tests/distill.rs` uses. The recipe: E 8, one group applied
3 times, 2 steps of batch 4, seed 7. The script fails (exit 1) when transformers reports any
missing, unexpected or mismatched key, so a fixture that it writes already passed that check.
Reruns give the same weights and references; only distill.json's teacher path and wall times
differ.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "parity"))
import _bootstrap  # noqa: E402

_bootstrap.ensure_venv(
    [_bootstrap.REPO / "tools" / "parity" / "requirements.txt"],
    ["torch", "transformers", "safetensors"],
)

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import AlbertModel, BertTokenizer  # noqa: E402

REPO = _bootstrap.REPO
OUT = REPO / "crates" / "model" / "tests" / "fixtures" / "albert_distilled"
TEACHER = REPO / "crates" / "model" / "tests" / "fixtures" / "bert"
WORDS = ["the", "movie", "was", "good", "bad", "plot", "a", "fine", "film", "news", "today", "is"]
SENTENCES = [
    "the movie was good",
    "a fine film today",
    "the plot is bad news",
    "good",
    "the news today is a fine plot",
]


def vocab() -> list[str]:
    v = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    while len(v) < 99:
        v.append(f"w{len(v)}")
    return v


def corpus(n: int, salt: int) -> list[str]:
    """Seeded sentences of the tiny vocabulary (the same rule as crates/train/tests/distill.rs)."""
    out = []
    for i in range(n):
        k = i * 7 + salt * 13
        length = 3 + k % 6
        out.append(" ".join(WORDS[(k + j * 5 + j * j) % len(WORDS)] for j in range(length)))
    return out


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=str(REPO / "target" / "release" / "adalbert"))
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    out = Path(args.out)
    student = out / "student"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        teacher = tmp / "tiny-bert"
        teacher.mkdir()
        for f in ["config.json", "pytorch_model.bin"]:
            shutil.copy(TEACHER / f, teacher / f)
        (teacher / "vocab.txt").write_text("\n".join(vocab()))
        (tmp / "corpus.txt").write_text("\n".join(corpus(40, 0)) + "\n")
        (tmp / "held.txt").write_text("\n".join(corpus(8, 1)) + "\n")
        if student.exists():
            shutil.rmtree(student)
        out.mkdir(parents=True, exist_ok=True)
        cmd = [
            args.bin, "distill", "--teacher", str(teacher), "--out", str(student),
            "--embedding-size", "8", "--applications", "3", "--steps", "2", "--warmup-steps", "1",
            "--batch-size", "4", "--max-len", "16", "--lr", "1e-3", "--seed", "7",
            "--corpus", f"file:{tmp / 'corpus.txt'}", "--held-out", str(tmp / "held.txt"), "--json",
        ]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    torch.manual_seed(0)
    model, info = AlbertModel.from_pretrained(str(student), output_loading_info=True)
    model.eval()
    bad = {k: sorted(map(str, v)) for k, v in info.items() if v}
    if bad:
        print(f"transformers does not load {student} cleanly: {bad}", file=sys.stderr)
        return 1
    keys = sorted(model.state_dict().keys())
    tok = BertTokenizer.from_pretrained(str(student))  # the student's vocab.txt
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(
            input_ids=enc["input_ids"],
            token_type_ids=enc["token_type_ids"],
            attention_mask=enc["attention_mask"],
        ).last_hidden_state
    pooled = mean_pool(hidden, enc["attention_mask"])
    save_file(
        {
            "input_ids": enc["input_ids"].to(torch.int64).contiguous(),
            "token_type_ids": enc["token_type_ids"].to(torch.int64).contiguous(),
            "attention_mask": enc["attention_mask"].to(torch.int64).contiguous(),
            "last_hidden_state": hidden.contiguous(),
            "mean_pooled": pooled.contiguous(),
        },
        str(out / "reference.safetensors"),
    )
    (out / "expected_keys.json").write_text(json.dumps(keys, indent=1) + "\n")
    ids = [tok(s)["input_ids"] for s in SENTENCES]
    reference = {
        "generator": "tools/distill/make_fixture.py",
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
        "sentences": SENTENCES,
        "input_ids": ids,
        "loading_info": {k: sorted(map(str, v)) for k, v in info.items()},
    }
    (out / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")
    print(f"wrote {out} ({len(keys)} keys, hidden {tuple(hidden.shape)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
