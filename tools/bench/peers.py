#!/usr/bin/env python3
"""Peer timings for all-MiniLM-L6-v2 (2 threads): PyTorch (transformers) and ONNX Runtime, fp32 and int8.

Usage:  python3 tools/bench/peers.py [--engines torch,ort,ort-int8,torch-int8] [--shapes 1x32,8x128] [--iters N]
Re-executes itself inside ${ADALBERT_VENV:-tools/.venv} (created and filled with
tools/bench/requirements.txt when needed). Each engine runs in its own child process so that one
runtime's thread pool cannot disturb the other's timing.

Inputs are deterministic and shared with `adalbert bench`:
    ids[b][s] = 1000 + (b * 7919 + s * 104729) % 20000,  attention_mask = 1,  token_type_ids = 0.
Per (engine, shape) one JSON line on stdout:
    {"engine": "torch"|"ort", "variant": "fp32"|"int8", "shape": "BxS", "ms": median ms per batch, "iters": N,
     "checksum": sum(last_hidden_state) in float64, "mean_abs": mean |last_hidden_state|,
     "max_abs_diff_vs_ref": max |out - torch reference|, ...}
Files (under --out, default assets/bench/):
    minilm.onnx                   exported once (torch.onnx.export, TorchScript exporter, opset 17),
                                  reused while minilm.onnx.stamp matches the model and torch version
    minilm.int8.onnx              onnxruntime.quantization.quantize_dynamic of it (int8 weights per output
                                  channel, activations quantized per tensor at run time), cached the same way
    ref_<shape>.safetensors       input_ids, attention_mask, token_type_ids (i64 [B,S]) and
                                  last_hidden_state (f32 [B,S,384]) from PyTorch, for the Rust side
"""

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "parity"))
import _bootstrap  # noqa: E402

REPO = _bootstrap.REPO
DEFAULT_ITERS = {"1x32": 100, "8x128": 20}
WARMUP = 3


def parse_shape(s: str):
    b, t = s.lower().split("x")
    return int(b), int(t)


def bench_ids(b: int, s: int):
    import numpy as np

    bb = np.arange(b, dtype=np.int64)[:, None]
    ss = np.arange(s, dtype=np.int64)[None, :]
    return 1000 + (bb * 7919 + ss * 104729) % 20000


def inputs(shape: str):
    import numpy as np

    b, s = parse_shape(shape)
    ids = bench_ids(b, s)
    return ids, np.ones((b, s), dtype=np.int64), np.zeros((b, s), dtype=np.int64)


def peak_rss_mb() -> float:
    """Peak resident memory of this (child) process in MB (Linux ru_maxrss is in KB)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def summarize(out, ref=None):
    import numpy as np

    out = np.asarray(out, dtype=np.float32)
    d = {"checksum": float(out.astype(np.float64).sum()), "mean_abs": float(np.abs(out.astype(np.float64)).mean())}
    if ref is not None:
        d["max_abs_diff_vs_ref"] = float(np.abs(out.astype(np.float64) - ref.astype(np.float64)).max())
    return d


def time_it(fn, iters: int):
    for _ in range(WARMUP):
        out = fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return out, statistics.median(times), min(times)


def load_ref(out_dir: Path, shape: str):
    from safetensors.numpy import load_file

    p = out_dir / f"ref_{shape}.safetensors"
    return load_file(str(p))["last_hidden_state"] if p.exists() else None


def model_digest(model_dir: Path) -> str:
    h = hashlib.sha256()
    with open(model_dir / "model.safetensors", "rb") as f:
        for blk in iter(lambda: f.read(1 << 20), b""):
            h.update(blk)
    return h.hexdigest()


# ------------------------------------------------------------------ children
def child_torch(args):
    import torch
    from safetensors.numpy import save_file
    from transformers import AutoModel

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    model = AutoModel.from_pretrained(str(args.model), dtype=torch.float32).eval()
    for shape in args.shapes:
        ids, mask, tt = (torch.from_numpy(x) for x in inputs(shape))
        with torch.inference_mode():
            out, ms, ms_min = time_it(
                lambda: model(input_ids=ids, attention_mask=mask, token_type_ids=tt).last_hidden_state, args.iters_for(shape)
            )
        out = out.float().numpy()
        args.out.mkdir(parents=True, exist_ok=True)
        tmp = args.out / f".ref_{shape}.safetensors.tmp"
        save_file(
            {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": tt.numpy(), "last_hidden_state": out},
            str(tmp),
            metadata={"generator": "tools/bench/peers.py (torch)"},
        )
        tmp.chmod(0o644)
        os.replace(tmp, args.out / f"ref_{shape}.safetensors")
        row = {"engine": "torch", "variant": "fp32", "shape": shape, "ms": round(ms, 3), "ms_min": round(ms_min, 3), "iters": args.iters_for(shape)}
        row.update(summarize(out, out))
        row["version"] = torch.__version__.split("+")[0]
        row["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(row), flush=True)


def child_export(args):
    """Export assets/bench/minilm.onnx unless the cached one matches model + torch version."""
    import torch
    from transformers import AutoModel

    onnx_path = args.out / "minilm.onnx"
    stamp = args.out / "minilm.onnx.stamp"
    key = f"{model_digest(args.model)} torch={torch.__version__} opset=17"
    if onnx_path.exists() and stamp.exists() and stamp.read_text().strip() == key:
        print(f"[peers] reusing {onnx_path}", file=sys.stderr)
        return
    torch.set_num_threads(args.threads)
    model = AutoModel.from_pretrained(str(args.model), dtype=torch.float32, attn_implementation="eager").eval()

    class LastHidden(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    ids, mask, tt = (torch.from_numpy(x) for x in inputs("2x16"))
    names = ["input_ids", "attention_mask", "token_type_ids"]
    args.out.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    tmp = args.out / ".minilm.onnx.tmp"
    print(f"[peers] exporting {onnx_path} (torch.onnx.export, opset 17)", file=sys.stderr)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LastHidden(model).eval(),
            (ids, mask, tt),
            str(tmp),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={k: {0: "batch", 1: "seq"} for k in names + ["last_hidden_state"]},
            opset_version=17,
            dynamo=False,
        )
    os.replace(tmp, onnx_path)
    stamp.write_text(key + "\n")


def child_ort(args, variant="fp32"):
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    model = args.out / ("minilm.onnx" if variant == "fp32" else "minilm.int8.onnx")
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    for shape in args.shapes:
        ids, mask, tt = inputs(shape)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt}
        out, ms, ms_min = time_it(lambda: sess.run(["last_hidden_state"], feed)[0], args.iters_for(shape))
        row = {"engine": "ort", "variant": variant, "shape": shape, "ms": round(ms, 3), "ms_min": round(ms_min, 3),
               "iters": args.iters_for(shape)}
        row.update(summarize(np.asarray(out), load_ref(args.out, shape)))
        row["version"] = ort.__version__
        row["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(row), flush=True)


def child_ort_int8_export(args):
    """Quantize minilm.onnx with ORT's dynamic quantization unless the cached copy matches it.

    Per-channel symmetric int8 weights (QInt8) are the closest match to our int8 path (weights
    per output channel); ORT quantizes activations per tensor (uint8, asymmetric) at run time,
    which is its own recipe and the one its documentation recommends for transformers on CPU.
    """
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = args.out / "minilm.onnx", args.out / "minilm.int8.onnx"
    stamp = args.out / "minilm.int8.onnx.stamp"
    key = f"{(args.out / 'minilm.onnx.stamp').read_text().strip()} ort={ort.__version__} per_channel=1 QInt8"
    if dst.exists() and stamp.exists() and stamp.read_text().strip() == key:
        print(f"[peers] reusing {dst}", file=sys.stderr)
        return
    stamp.unlink(missing_ok=True)
    tmp = args.out / ".minilm.int8.onnx.tmp"
    print(f"[peers] quantizing {src} -> {dst} (quantize_dynamic, per-channel QInt8)", file=sys.stderr)
    quantize_dynamic(str(src), str(tmp), per_channel=True, weight_type=QuantType.QInt8)
    os.replace(tmp, dst)
    stamp.write_text(key + "\n")


def child_torch_int8(args):
    """PyTorch's dynamic int8 quantization of every nn.Linear (qint8 weights per tensor, the API's
    default; activations quantized per tensor at run time), on its default quantized engine."""
    import warnings

    import torch
    from transformers import AutoModel

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    model = AutoModel.from_pretrained(str(args.model), dtype=torch.float32).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    for shape in args.shapes:
        ids, mask, tt = (torch.from_numpy(x) for x in inputs(shape))
        with torch.inference_mode():
            out, ms, ms_min = time_it(
                lambda: model(input_ids=ids, attention_mask=mask, token_type_ids=tt).last_hidden_state, args.iters_for(shape)
            )
        row = {"engine": "torch", "variant": "int8", "shape": shape, "ms": round(ms, 3), "ms_min": round(ms_min, 3),
               "iters": args.iters_for(shape), "quantized_engine": torch.backends.quantized.engine}
        row.update(summarize(out.float().numpy(), load_ref(args.out, shape)))
        row["version"] = torch.__version__.split("+")[0]
        row["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(row), flush=True)


# ------------------------------------------------------------------ parent
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=REPO / "assets" / "minilm")
    ap.add_argument("--out", type=Path, default=REPO / "assets" / "bench")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--shapes", default="1x32,8x128")
    ap.add_argument("--iters", type=int, default=None, help="iterations per shape (default 100 for 1x32, 20 for 8x128, else 20)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.model = args.model.resolve()
    args.out = args.out.resolve()
    args.shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    for s in args.shapes:
        parse_shape(s)
    args.iters_for = lambda shape: args.iters or DEFAULT_ITERS.get(shape, 20)

    if args.child:
        CHILDREN[args.child](args)
        return

    _bootstrap.ensure_venv(
        [Path(__file__).resolve().parent / "requirements.txt"], ["torch", "transformers", "safetensors", "onnxruntime", "onnx"]
    )
    if not (args.model / "model.safetensors").exists():
        sys.exit(f"{args.model}/model.safetensors not found: run scripts/fetch-assets first")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(engines) - set(ENGINES)
    if unknown:
        sys.exit(f"unknown engine(s) {sorted(unknown)}; known: {', '.join(ENGINES)}")

    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS=str(args.threads))
    base = [sys.executable, str(Path(__file__).resolve()), "--model", str(args.model), "--out", str(args.out),
            "--shapes", ",".join(args.shapes), "--threads", str(args.threads)]
    if args.iters:
        base += ["--iters", str(args.iters)]
    # torch first: it writes the reference outputs the other children compare against
    steps = []
    for engine in ENGINES:
        if engine in engines:
            steps += [s for s in ENGINES[engine] if s not in steps]
    for step in steps:
        r = subprocess.run(base + ["--child", step], env=env)
        if r.returncode != 0:
            sys.exit(f"peers: the {step} step failed (exit {r.returncode})")


# The child steps each engine needs, in order (an export is shared and runs once).
ENGINES = {
    "torch": ["torch"],
    "ort": ["export", "ort"],
    "ort-int8": ["export", "ort-int8-export", "ort-int8"],
    "torch-int8": ["torch-int8"],
}
CHILDREN = {
    "torch": child_torch,
    "export": child_export,
    "ort": child_ort,
    "ort-int8-export": child_ort_int8_export,
    "ort-int8": lambda args: child_ort(args, "int8"),
    "torch-int8": child_torch_int8,
}

if __name__ == "__main__":
    main()
