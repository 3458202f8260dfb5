#!/usr/bin/env python3
"""Bench table, target/bench/summary.json and results/performance.md (standard library only).

Reads JSON lines from peers.py / train_peer.py and from `adalbert bench --json`:
  {"engine", "variant" (default "fp32"), "shape", "ms", "ms_min", "checksum", "mean_abs",
   "max_abs_diff_vs_ref", "peak_rss_mb", "examples_per_s" (training rows), ...}
The same (engine, variant, shape) may appear once per round; the row with the lowest median
is kept (rounds alternate engines, so the best median filters out bursts of foreign load).
Agreement of every fp32 inference row is judged against the PyTorch row of the same shape:
|checksum - ref| / max(|ref|, 1e-12) < 1e-4 and |mean_abs - ref| / ref < 1e-4; compressed
rows are reported (max |diff| against the PyTorch output) but not judged.
Exit status 1 when an fp32 row disagrees or a JSON line is malformed.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

TOL = 1e-4
REQUIRED = ("engine", "shape", "ms")


def read_rows(path: Path, errors: list):
    rows = []
    if not path.exists():
        return rows
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or not line.startswith("{"):
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append(f"{path}:{n}: not JSON ({e}): {line[:120]}")
            continue
        missing = [k for k in REQUIRED if k not in r]
        if missing:
            errors.append(f"{path}:{n}: missing field(s) {missing}")
            continue
        r.setdefault("variant", "fp32")
        rows.append(r)
    return rows


def best(rows):
    """One row per (engine, variant, shape): the lowest median over rounds."""
    out = {}
    for r in rows:
        k = (r["engine"], r["variant"], r["shape"])
        r["rounds"] = out[k]["rounds"] + 1 if k in out else 1
        if k not in out or r["ms"] < out[k]["ms"]:
            if k in out:
                r["rounds"] = out[k]["rounds"]
            out[k] = r
        else:
            out[k]["rounds"] = r["rounds"]
    return out


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


ISA_OF_INTEREST = ("avx2", "fma", "avx_vnni", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
                   "amx_tile", "amx_bf16", "amx_int8")


def cpu_isa():
    """The /proc/cpuinfo flags that decide which kernels any engine here can use, in a fixed order."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in ISA_OF_INTEREST if f in have]
    except OSError:
        pass
    return []


def fmt(v, spec, empty="-"):
    return format(v, spec) if isinstance(v, (int, float)) else empty


def ratio(a, b):
    return a / b if a is not None and b else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers", type=Path, required=True)
    ap.add_argument("--ours", type=Path, required=True)
    ap.add_argument("--ours-status", default="ok")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--summary", type=Path, required=True)
    ap.add_argument("--profile-dir", type=Path, default=None)
    ap.add_argument("--markdown", type=Path, default=None)
    ap.add_argument("--accuracy", type=Path, default=None, help="JSON lines {kernels, task, metric, value, examples}")
    a = ap.parse_args()

    errors = []
    rows = best(read_rows(a.peers, errors) + read_rows(a.ours, errors))
    get = lambda e, v, s: rows.get((e, v, s))  # noqa: E731
    ms = lambda e, v, s: (rows[(e, v, s)]["ms"] if (e, v, s) in rows else None)  # noqa: E731
    steps = ("train", "distill")  # training-step rows, not inference shapes
    shapes = sorted({s for (_, v, s) in rows if not v.startswith(steps)}, key=lambda s: int(s.split("x")[0]) * int(s.split("x")[1]))
    compressed = sorted({v for (e, v, _) in rows if e == "adalbert" and v not in ("fp32",) and not v.startswith("fp32+") and not v.startswith(steps)})
    adapters = sorted({v for (e, v, _) in rows if e == "adalbert" and v.startswith("fp32+")})

    ok = not errors
    agree_rows = []
    for (e, v, s), r in sorted(rows.items()):
        t = get("torch", "fp32", s)
        if v != "fp32" or t is None or "checksum" not in r:
            continue
        dc, dm = rel(r["checksum"], t["checksum"]), rel(r["mean_abs"], t["mean_abs"])
        agree = dc < TOL and dm < TOL
        ok &= agree
        agree_rows.append((e, s, dc, dm, r.get("max_abs_diff_vs_ref"), agree))

    md = []
    md.append("# Performance: adalbert vs ONNX Runtime vs PyTorch\n")
    md.append(f"Generated by `make bench` (tools/bench/run.sh, tools/bench/report.py) on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n")
    md.append(f"Host: {cpu_name()}, {os.cpu_count()} CPUs, ISA {' '.join(cpu_isa()) or 'unknown'} (/proc/cpuinfo). all-MiniLM-L6-v2, {a.threads} threads, same token ids "
              "everywhere (`ids[b][s] = 1000 + (b*7919 + s*104729) % 20000`, mask 1, token types 0). "
              "Times are medians in ms per batch; each engine ran in every round (alternating) and the best "
              "median is kept. Ratios below 1 mean adalbert is faster. The machine is shared with other jobs, "
              "so absolute times are noisy; compare within a table.\n")
    flags = next((r.get("cpu_flags") for r in rows.values() if r.get("cpu_flags")), None)
    if flags:
        md.append(f"ISA flags that pick our kernels (from `adalbert bench --json`): {' '.join(flags)}.\n")
    try:
        load = os.getloadavg()
        md.append(f"Load average when the report was written: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
                  f"(1 / 5 / 15 min) on {os.cpu_count()} CPUs. Above the CPU count, engines whose thread pools "
                  "spin-wait (ONNX Runtime, PyTorch/OpenMP, candle) lose more than ones that park, so ratios "
                  "measured under load can flatter adalbert; rerun on an idle machine for the record.\n")
    except OSError:
        pass
    md.append("## Inference (fp32)\n")
    md.append("| shape | adalbert ms | ONNX Runtime ms | PyTorch ms | ours/ORT | ours/PyTorch | max abs diff vs PyTorch | peak RSS MB (ours / ORT / PyTorch) |")
    md.append("|---|---|---|---|---|---|---|---|")
    for s in shapes:
        o, ort, pt = ms("adalbert", "fp32", s), ms("ort", "fp32", s), ms("torch", "fp32", s)
        rss = " / ".join(fmt((get(e, "fp32", s) or {}).get("peak_rss_mb"), ".0f") for e in ("adalbert", "ort", "torch"))
        mad = (get("adalbert", "fp32", s) or {}).get("max_abs_diff_vs_ref")
        md.append(f"| {s} | {fmt(o, '.2f')} | {fmt(ort, '.2f')} | {fmt(pt, '.2f')} | {fmt(ratio(o, ort), '.2f')} | "
                  f"{fmt(ratio(o, pt), '.2f')} | {fmt(mad, '.1e')} | {rss} |")
    if compressed:
        md.append("\n## Inference (compressed)\n")
        md.append("| shape | variant | ISA | adalbert ms | PyTorch fp32 ms | speed-up vs PyTorch fp32 | ours fp32 / compressed | max abs diff vs PyTorch fp32 | peak RSS MB |")
        md.append("|---|---|---|---|---|---|---|---|---|")
        for s in shapes:
            for v in compressed:
                r = get("adalbert", v, s)
                if r is None:
                    continue
                pt, o32 = ms("torch", "fp32", s), ms("adalbert", "fp32", s)
                md.append(f"| {s} | {v} | {r.get('isa', '-')} | {r['ms']:.2f} | {fmt(pt, '.2f')} | {fmt(ratio(pt, r['ms']), '.2f')}x | "
                          f"{fmt(ratio(o32, r['ms']), '.2f')}x | {fmt(r.get('max_abs_diff_vs_ref'), '.1e')} | {fmt(r.get('peak_rss_mb'), '.0f')} |")
    int8_peers = [s for s in shapes if get("ort", "int8", s) or get("torch", "int8", s)]
    if int8_peers:
        md.append("\n## int8 against the peers' int8\n")
        md.append("ONNX Runtime: `quantize_dynamic` of the exported model (int8 weights per output channel, "
                  "activations per tensor at run time). PyTorch: `torch.ao.quantization.quantize_dynamic` of every "
                  "`nn.Linear` (qint8 weights per tensor, activations per tensor at run time). Ours: weights per "
                  "output channel, activations per row. Max abs diff is each engine's int8 output against PyTorch "
                  "fp32, the error its quantization adds.\n")
        md.append("| shape | adalbert int8 ms (ISA) | ONNX Runtime int8 ms | PyTorch int8 ms | ours/ORT int8 | ours/PyTorch int8 | "
                  "max abs diff vs PyTorch fp32 (ours / ORT / PyTorch) |")
        md.append("|---|---|---|---|---|---|---|")
        for s in int8_peers:
            o, ort, pt = ms("adalbert", "int8", s), ms("ort", "int8", s), ms("torch", "int8", s)
            isa = (get("adalbert", "int8", s) or {}).get("isa", "-")
            mad = " / ".join(fmt((get(e, "int8", s) or {}).get("max_abs_diff_vs_ref"), ".1e") for e in ("adalbert", "ort", "torch"))
            md.append(f"| {s} | {fmt(o, '.2f')} ({isa}) | {fmt(ort, '.2f')} | {fmt(pt, '.2f')} | {fmt(ratio(o, ort), '.2f')} | "
                      f"{fmt(ratio(o, pt), '.2f')} | {mad} |")
    if adapters:
        md.append("\n## Adapter overhead (fp32)\n")
        md.append("| shape | adapter | bare ms | with adapter ms | overhead |")
        md.append("|---|---|---|---|---|")
        for s in shapes:
            for v in adapters:
                base, w = ms("adalbert", "fp32", s), ms("adalbert", v, s)
                over = (w / base - 1) * 100 if base and w else None
                md.append(f"| {s} | {v[5:]} | {fmt(base, '.2f')} | {fmt(w, '.2f')} | {fmt(over, '+.1f')}% |")
    train = sorted(k for k in rows if k[1].startswith("train"))
    if train:
        md.append("\n## Adapter training throughput\n")
        md.append("Forward with dropout, cross-entropy, backward and AdamW on the adapter, LayerNorm and head "
                  "parameters (backbone frozen), batch x tokens as shown.\n")
        md.append("| shape | engine | config | ms/step | examples/s | ours/PyTorch (examples/s) | peak RSS MB |")
        md.append("|---|---|---|---|---|---|---|")
        for (e, v, s) in train:
            r = rows[(e, v, s)]
            pt = get("torch", v.split(" (")[0], s)
            rat = ratio(r.get("examples_per_s"), pt.get("examples_per_s")) if pt and e == "adalbert" else None
            md.append(f"| {s} | {e} | {v[6:]} | {r['ms']:.1f} | {fmt(r.get('examples_per_s'), '.1f')} | {fmt(rat, '.2f')} | {fmt(r.get('peak_rss_mb'), '.0f')} |")
    distill = sorted(k for k in rows if k[1].startswith("distill") and k[0] == "adalbert")
    distill += sorted(k for k in rows if k[1].startswith("distill") and k[0] != "adalbert"
                      and ("adalbert", k[1], k[2]) not in rows)
    if distill:
        md.append("\n## Distillation step\n")
        md.append("One step of `adalbert distill` (all-MiniLM-L6-v2 teacher forward recording hidden states and "
                  "attentions; ALBERT student, E 128, one shared layer applied 6 times, forward and backward through "
                  "every weight; hidden MSE + attention KL + pooled cosine; global-norm clipping; AdamW) against the "
                  "same step in PyTorch (`tools/bench/distill_peer.py`, transformers' AlbertModel), batch x tokens "
                  "as shown, every token real, the same generated corpus. Ours: `adalbert distill --bench-steps`.\n")
        md.append("| shape | config | ours ms/step | PyTorch ms/step | PyTorch/ours (speed-up) | ours tokens/s | "
                  "ours kernels | CPU |")
        md.append("|---|---|---|---|---|---|---|---|")
        for (e, v, s) in distill:
            ours_r, pt = rows.get(("adalbert", v, s)), get("torch", v, s)
            om, pm = (ours_r or {}).get("ms"), (pt or {}).get("ms")
            cpu = (ours_r or {}).get("cpu") or cpu_name()
            isa = (ours_r or {}).get("isa", "-")
            md.append(f"| {s} | {v[8:]} | {fmt(om, '.1f')} | {fmt(pm, '.1f')} | {fmt(ratio(pm, om), '.2f')} | "
                      f"{fmt((ours_r or {}).get('tokens_per_s'), '.0f')} | {isa} | {cpu} |")
    acc = []
    if a.accuracy and a.accuracy.exists():
        for line in a.accuracy.read_text().splitlines():
            try:
                acc.append(json.loads(line))
            except json.JSONDecodeError:
                errors.append(f"{a.accuracy}: not JSON: {line[:120]}")
    if acc:
        md.append("\n## Accuracy of the compressed path\n")
        md.append("`adalbert eval` of task bundles (`BENCH_BUNDLE`) on their offline-suite dev sets with each inference "
                  "path (`ADALBERT_KERNELS=candle|auto|bf16|int8`): candle's fp32 ops, adalbert's fp32 kernels, the "
                  "compressed bf16 and int8 paths.\n")
        md.append("| task | examples | kernels | metric | value | change vs candle fp32 (points) |")
        md.append("|---|---|---|---|---|---|")
        base = {r["task"]: r["value"] for r in acc if r["kernels"] == "candle"}
        for r in acc:
            d = (r["value"] - base[r["task"]]) * 100 if r["task"] in base else None
            md.append(f"| {r['task']} | {r.get('examples', '-')} | {r['kernels']} | {r['metric']} | {r['value']:.4f} | {fmt(d, '+.2f')} |")
    md.append("\n## Agreement (fp32 vs PyTorch)\n")
    md.append("| engine | shape | checksum rel. diff | mean abs rel. diff | max abs diff | agree (1e-4) |")
    md.append("|---|---|---|---|---|---|")
    for e, s, dc, dm, mad, agree in agree_rows:
        md.append(f"| {e} | {s} | {dc:.1e} | {dm:.1e} | {fmt(mad, '.1e')} | {'yes' if agree else 'NO'} |")
    if a.profile_dir:
        for k, title in (("candle", "before: candle's ops (`--kernels candle`)"), ("auto", "after: adalbert's fp32 kernels"),
                         ("bf16", "compressed path (`--precision bf16`)"),
                         ("int8", "int8 path (`--precision int8`)")):
            p = a.profile_dir / f"profile_{k}.txt"
            if p.exists() and p.read_text().strip():
                md.append(f"\n## Profile, 8x128, {title}\n")
                md.append("`perf record` of `adalbert bench --shape 8x128 --iters 30` (30 timed forward passes after loading the model, so loading is a small share), top entries (self time):\n")
                md.append("```")
                md.extend(" ".join(line.split()) for line in p.read_text().splitlines())
                md.append("```")
    md.append("\n## What runs where\n")
    md.append("- adalbert fp32 (`--kernels auto`): adalbert's own kernels in `crates/kernels/` (the `adalbert-kernels` crate): "
              "AVX-512 12x32 GEMM register tile (k loop unrolled by 4, K in passes of 384, next weight panel prefetched "
              "into L2) on weights packed once at load (fused QKV), row blocks dealt evenly over the threads, column "
              "groups sized to L2, row tiles outermost in a block; fused per-head attention (QK^T with scale and mask in "
              "the epilogue, keys packed by 16x16 vector transposes, softmax normalized on the context rows, PV); "
              "bias+GELU in the GEMM epilogue; residual+LayerNorm inside the product before it (dense/output "
              "projection, or a task's last adapter); exp/GELU/softmax in explicit AVX-512 (FMA, `vscalefps`, "
              "refined `vrcp14ps`); task adapters packed once per bundle. Without AVX-512 the default is candle's ops "
              "(its AVX2 matrix multiply beats our portable tile); the portable kernels run with `--kernels portable`.")
    md.append("- adalbert bf16 (`--precision bf16`, `ADALBERT_KERNELS=bf16`): weights rounded to bf16 and packed into "
              "AMX tiles; activations rounded with `vcvtne2ps2bf16`; `tdpbf16ps` products with fp32 accumulation for "
              "every linear layer and for attention's QK^T and PV; the feed-forward intermediate never exists in fp32 "
              "(bias, GELU and bf16 rounding in the AMX epilogue, the next product reads the tiles). Softmax, "
              "LayerNorm and residuals stay fp32. With AVX-512 BF16 but no AMX: `vdpbf16ps` on a 12x32 register tile "
              "over bf16 pairs, attention fp32. Without either: fp32 kernels on the bf16-rounded weights.")
    md.append("- adalbert int8 (`--precision int8`, `ADALBERT_KERNELS=int8[:KERNEL]`): weights quantized symmetrically "
              "per output channel at load, activations symmetrically per row when each product starts (stored as "
              "u8 + 128, the shift folded back per column); `vpdpbusd` on a 12x32 zmm tile (AVX512-VNNI) or 3x32 ymm "
              "tile (AVX-VNNI), `tdpbusd` on AMX-INT8, plain Rust elsewhere; i32 accumulation, then scales, bias, "
              "GELU in the epilogue and LayerNorm in the row block. Attention, softmax, LayerNorm and adapters stay "
              "fp32. `adalbert info --kernels` says which kernel each precision runs on the host.")
    md.append("- training (`adalbert bench --train`): candle's autograd graph with adalbert's ops for the heavy parts "
              "(`crates/model/src/train_ops/`: frozen linear on the fp32 GEMM forward and backward, new activations "
              "written without a zero fill, LayerNorm, GELU, "
              "attention and dropout with hand-written backward); candle's own pool runs single-threaded "
              "(`CANDLE_NUM_THREADS=1`, set by the CLI) because its spinning workers took a core from the GEMM.")
    md.append("- peak RSS: the whole process's high-water mark (`VmHWM` / `ru_maxrss`); adalbert runs one shape per "
              "process, the peers both shapes in one process.")
    text = "\n".join(md) + "\n"
    print(text)
    if not rows.get(("adalbert", "fp32", shapes[0] if shapes else "")):
        print(f"adalbert: {a.ours_status if a.ours_status != 'ok' else 'no result'}")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if a.markdown:
        a.markdown.parent.mkdir(parents=True, exist_ok=True)
        a.markdown.write_text(text)
        print(f"report: {a.markdown}")

    a.summary.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "model": "all-MiniLM-L6-v2 (assets/minilm)",
        "threads": a.threads,
        "ids": "ids[b][s] = 1000 + (b*7919 + s*104729) % 20000; attention_mask 1; token_type_ids 0",
        "agreement": f"fp32 checksum and mean_abs relative difference vs torch < {TOL}",
        "host": {"cpu": cpu_name(), "cpus": os.cpu_count(), "machine": platform.machine(), "isa": cpu_isa()},
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "ours_status": a.ours_status,
        "rows": list(rows.values()),
        "all_agree": ok,
        "errors": errors,
    }
    tmp = a.summary.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=1) + "\n")
    os.replace(tmp, a.summary)
    print(f"summary: {a.summary}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
