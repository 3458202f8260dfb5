#!/usr/bin/env python3
"""Print the bench table and write target/bench/summary.json (standard library only).

Reads JSON lines {"engine","shape","ms","checksum","mean_abs",...} from peers.py and from
`adalbert bench --json`. Agreement of every row is judged against the PyTorch row of the same
shape: |checksum - ref| / max(|ref|, 1e-12) < 1e-4 and |mean_abs - ref| / ref < 1e-4.
Exit status 1 when a row disagrees or a JSON line is malformed.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

TOL = 1e-4
REQUIRED = ("engine", "shape", "ms", "checksum", "mean_abs")


def read_rows(path: Path, errors: list):
    rows = []
    if not path.exists():
        return rows
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line:
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
        rows.append(r)
    return rows


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


def shape_key(s):
    b, t = s.split("x")
    return (int(b) * int(t), s)


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers", type=Path, required=True)
    ap.add_argument("--ours", type=Path, required=True)
    ap.add_argument("--ours-status", default="ok")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--summary", type=Path, required=True)
    a = ap.parse_args()

    errors = []
    rows = read_rows(a.peers, errors) + read_rows(a.ours, errors)
    ours = {r["shape"]: r for r in rows if r["engine"] == "adalbert"}
    ref = {r["shape"]: r for r in rows if r["engine"] == "torch"}
    order = {"adalbert": 0, "ort": 1, "torch": 2}
    rows.sort(key=lambda r: (shape_key(r["shape"]), order.get(r["engine"], 9), r["engine"]))

    ok = not errors
    out_rows = []
    hdr = f"{'engine':<10} {'shape':<7} {'ms/batch':>10} {'ours/this':>10} {'checksum':>16} {'rel.diff':>9} {'mean_abs':>10} {'rel.diff':>9} {'max|d|':>9}  agree"
    print(f"all-MiniLM-L6-v2, fp32, {a.threads} threads, ids[b][s] = 1000 + (b*7919 + s*104729) % 20000")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        shape = r["shape"]
        o = ours.get(shape)
        ratio = o["ms"] / r["ms"] if o and r["ms"] > 0 else None
        t = ref.get(shape)
        if t is not None:
            dc, dm = rel(r["checksum"], t["checksum"]), rel(r["mean_abs"], t["mean_abs"])
            agree = dc < TOL and dm < TOL
        else:
            dc = dm = None
            agree = None
        if agree is False:
            ok = False
        mad = r.get("max_abs_diff_vs_ref", r.get("max_abs_diff"))

        def f(v, spec):
            width = int("".join(c for c in spec.split(".")[0] if c.isdigit()) or 0)
            return format(v, spec) if v is not None else "-".rjust(width)

        print(
            f"{r['engine']:<10} {shape:<7} {r['ms']:>10.2f} {f(ratio, '>10.2f')} {r['checksum']:>16.6f} {f(dc, '>9.1e')} "
            f"{r['mean_abs']:>10.6f} {f(dm, '>9.1e')} {f(mad, '>9.1e')}  {'-' if agree is None else ('yes' if agree else 'NO')}"
        )
        out_rows.append({**r, "ours_over_this": ratio, "checksum_rel_diff_vs_torch": dc, "mean_abs_rel_diff_vs_torch": dm, "agree": agree})
    if not ours:
        print(f"adalbert: {a.ours_status if a.ours_status != 'ok' else 'no result'}")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)

    a.summary.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "model": "all-MiniLM-L6-v2 (assets/minilm)",
        "dtype": "f32",
        "threads": a.threads,
        "ids": "ids[b][s] = 1000 + (b*7919 + s*104729) % 20000; attention_mask 1; token_type_ids 0",
        "agreement": f"checksum and mean_abs relative difference vs torch < {TOL}",
        "host": {"cpu": cpu_name(), "cpus": os.cpu_count(), "machine": platform.machine()},
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "ours_status": a.ours_status if ours or a.ours_status != "ok" else "no result",
        "rows": out_rows,
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
