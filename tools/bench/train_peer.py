#!/usr/bin/env python3
"""PyTorch peer for `adalbert bench --train`: Houlsby adapter training steps on all-MiniLM-L6-v2.

Usage:  <venv>/bin/python tools/bench/train_peer.py [--model assets/minilm] [--shape 16x64]
                                                    [--iters 10] [--threads 2] [--adapter 64]

Same configuration as `adalbert bench --train --adapter houlsby:64`:
  * the backbone frozen; trainable: two bottleneck adapters per layer (after the attention
    output projection and after the FFN output: x + up(relu(down(x))), width 64), a copy of
    every LayerNorm, and a 384 -> 2 classifier on the mask-aware mean of the token states;
  * dropout 0.1 (train mode), cross-entropy, AdamW (lr 1e-3, weight decay 0.01);
  * the bench token ids ids[b][s] = 1000 + (b * 7919 + s * 104729) % 20000, labels b % 2.
Prints one JSON line: {"engine": "torch", "variant": "train houlsby:64", "shape", "ms",
"ms_min", "examples_per_s", "loss", "peak_rss_mb", ...}.
"""

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import AutoModel


class Houlsby(nn.Module):
    """`y = dense(x); y + up(relu(down(y)))` around a frozen linear layer."""

    def __init__(self, dense: nn.Linear, width: int):
        super().__init__()
        self.dense = dense
        h = dense.out_features
        self.down = nn.Linear(h, width)
        self.up = nn.Linear(width, h)
        nn.init.normal_(self.down.weight, std=0.01)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x):
        y = self.dense(x)
        return y + self.up(torch.relu(self.down(y)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=Path(__file__).resolve().parents[2] / "assets" / "minilm")
    ap.add_argument("--shape", default="16x64")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--adapter", type=int, default=64, help="bottleneck width")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    b, s = (int(v) for v in args.shape.lower().split("x"))

    model = AutoModel.from_pretrained(str(args.model), dtype=torch.float32, attn_implementation="eager")
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in model.encoder.layer:
        layer.attention.output.dense = Houlsby(layer.attention.output.dense, args.adapter)
        layer.output.dense = Houlsby(layer.output.dense, args.adapter)
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            for p in m.parameters():
                p.requires_grad_(True)
    head = nn.Linear(model.config.hidden_size, 2)
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
    model.train()

    bb = np.arange(b, dtype=np.int64)[:, None]
    ss = np.arange(s, dtype=np.int64)[None, :]
    ids = torch.from_numpy(1000 + (bb * 7919 + ss * 104729) % 20000)
    mask = torch.ones((b, s), dtype=torch.int64)
    tt = torch.zeros((b, s), dtype=torch.int64)
    labels = torch.arange(b) % 2

    def step():
        h = model(input_ids=ids, attention_mask=mask, token_type_ids=tt).last_hidden_state
        m = mask.unsqueeze(-1).float()
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        loss = nn.functional.cross_entropy(head(nn.functional.dropout(pooled, 0.1)), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss)

    for _ in range(3):
        step()
    times = []
    loss = 0.0
    for _ in range(args.iters):
        t0 = time.perf_counter()
        loss = step()
        times.append((time.perf_counter() - t0) * 1e3)
    ms = statistics.median(times)
    trainable = sum(p.numel() for p in params)
    print(json.dumps({
        "engine": "torch", "variant": f"train houlsby:{args.adapter}", "shape": args.shape,
        "ms": round(ms, 2), "ms_min": round(min(times), 2), "iters": args.iters, "threads": args.threads,
        "examples_per_s": round(b / (ms / 1e3), 2), "loss": loss, "trainable_params": trainable,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "version": torch.__version__.split("+")[0],
    }), flush=True)


if __name__ == "__main__":
    main()
